using Oml.Models.Serving;
using Oml.Server;

namespace Oml.Fingerprinting.Tests.Endpoints;

/// <summary>The llama-tiny fixture with the tiny byte-level tokenizer and a small chat template, as a model folder
/// (in a temporary directory) that the servers can load.</summary>
internal sealed class ServedModel : IDisposable
{
    public const string ChatTemplate =
        "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}";

    public ServedModel()
    {
        Dir = Path.Combine(Path.GetTempPath(), "oml-served-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Dir);
        var fixture = TestModels.Fixture("llama-tiny");
        foreach (var f in new[] { "config.json", "generation_config.json", "model.safetensors" })
            File.Copy(Path.Combine(fixture, f), Path.Combine(Dir, f));
        var root = Path.GetFullPath(Path.Combine(fixture, "..", "..", "..", "..", ".."));
        File.Copy(Path.Combine(root, "scripts", "fixtures", "tiny-tokenizer.json"), Path.Combine(Dir, "tokenizer.json"));
        File.WriteAllText(Path.Combine(Dir, "tokenizer_config.json"),
            System.Text.Json.JsonSerializer.Serialize(new Dictionary<string, string?> { ["chat_template"] = ChatTemplate, ["bos_token"] = null }));
    }

    public string Dir { get; }

    public ModelBackend Load(int maxBatch = 64) => ModelBackend.Load(Dir, new BatchEngineOptions { MaxBatchSize = maxBatch });

    public void Dispose()
    {
        try { Directory.Delete(Dir, recursive: true); }
        catch (IOException) { }
    }
}
