using System.Text.Json.Nodes;
using Oml.Models;
// ri FIXTURE_DIR OUT_DIR SEED: a random-init checkpoint of the fixture's config (transformers' N(0, 0.02^2) init).
var j = JsonNode.Parse(File.ReadAllText(Path.Combine(args[0], "config.json")))!.AsObject();
using var model = Pretraining.CreateRandom(ModelConfig.Parse(j), ulong.Parse(args[2]));
ModelFolder.Save(model, args[1], args[0]);
Console.WriteLine($"saved {args[1]}");
