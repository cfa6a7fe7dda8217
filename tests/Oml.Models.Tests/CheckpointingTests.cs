using Oml.Engine;
using Oml.Models.Training;

namespace Oml.Models.Tests;

/// <summary>Activation checkpointing, the unmasked causal path and the micro-batch planner.</summary>
public class CheckpointingTests
{
    private static Tensor Ids(CausalLM m, int rows, int len, int seed)
    {
        var rng = new Random(seed);
        var ids = Enumerable.Range(0, rows * len).Select(_ => (long)rng.Next(m.Config.VocabSize)).ToArray();
        return Torch.FromArray<long>(ids, [rows, len]);
    }

    /// <summary>Every parameter's gradient of the mean next-token loss, plain or checkpointed.</summary>
    private static Dictionary<string, float[]> Gradients(string fixture, bool checkpoint)
    {
        using var m = ModelFolder.Load(Fixtures.Model(fixture), Device.Cpu, DType.Float32);
        foreach (var p in m.Parameters.Values) p.RequiresGrad = true;
        using var scope = Torch.NewScope();
        var ids = Ids(m, 3, 11, 7);
        Tensor LossOf(Tensor hidden)
        {
            var logits = m.Head(hidden);
            return CausalLM.Loss(logits, ids) * 0.5;
        }
        if (checkpoint) m.CheckpointedBackward(ids, LossOf);
        else LossOf(m.Hidden(ids)).Backward();
        var result = new Dictionary<string, float[]>();
        foreach (var (name, p) in m.Parameters)
        {
            using var g = p.Grad;
            Assert.NotNull(g);
            result[name] = g.Cpu().ToArray<float>();
        }
        return result;
    }

    [Theory]
    [InlineData("llama-tiny")]
    [InlineData("qwen3-tiny")]
    public void Checkpointed_gradients_equal_plain_gradients(string fixture)
    {
        var plain = Gradients(fixture, checkpoint: false);
        var ck = Gradients(fixture, checkpoint: true);
        Assert.Equal(plain.Keys.Order(), ck.Keys.Order());
        foreach (var (name, g) in plain)
        {
            double scale = g.Max(x => Math.Abs(x));
            Assert.True(scale > 0, $"{name} has a zero gradient");
            double diff = g.Zip(ck[name], (a, b) => Math.Abs(a - b)).Max();
            Assert.True(diff <= 1e-5 * Math.Max(1, scale), $"{name}: checkpointed gradient differs by {diff:E2} (largest entry {scale:E2})");
        }
    }

    [Fact]
    public void Unmasked_causal_attention_equals_the_masked_path()
    {
        using var m = ModelFolder.Load(Fixtures.Model("mistral-tiny"), Device.Cpu, DType.Float32);
        using var scope = Torch.NewScope();
        using var noGrad = Torch.NoGrad();
        var ids = Ids(m, 2, 9, 3);
        var plain = m.Forward(ids);                                                        // is_causal, no mask tensor
        var masked = m.Forward(ids, attentionMask: Torch.Ones([2, 9], DType.Int64));       // explicit mask path
        double diff = (plain - masked).Abs().Max().ToDouble();
        Assert.True(diff < 1e-5, $"logits differ by {diff:E2}");
    }

    private static ModelConfig Llama(int hidden, int inter, int layers, int heads, int kvHeads, int vocab) =>
        ModelConfig.Parse(new System.Text.Json.Nodes.JsonObject
        {
            ["model_type"] = "llama",
            ["architectures"] = new System.Text.Json.Nodes.JsonArray("LlamaForCausalLM"),
            ["hidden_size"] = hidden,
            ["intermediate_size"] = inter,
            ["num_hidden_layers"] = layers,
            ["num_attention_heads"] = heads,
            ["num_key_value_heads"] = kvHeads,
            ["vocab_size"] = vocab,
            ["rms_norm_eps"] = 1e-5,
            ["max_position_embeddings"] = 8192,
            ["rope_theta"] = 500000.0,
        });

    private static readonly ModelConfig Llama1B = Llama(2048, 8192, 16, 32, 8, 128256);
    private static readonly ModelConfig Llama8B = Llama(4096, 14336, 32, 32, 8, 128256);

    [Fact]
    public void Planner_keeps_a_fitting_batch_in_one_plain_pass()
    {
        long batch = 1024 * 17;
        var plan = MicroBatchPlanner.Plan(Llama1B, DType.BFloat16, 100L << 30, batch, 1.0 / 17);
        Assert.False(plan.Checkpoint);
        Assert.True(plan.Tokens >= batch, plan.ToString());
        Assert.True(plan.Tokens * plan.BytesPerToken <= 100L << 30);
    }

    [Fact]
    public void Planner_checkpoints_when_plain_micro_batches_would_be_small()
    {
        long batch = 24576L * 17;
        long budget = 20L << 30;
        var plan = MicroBatchPlanner.Plan(Llama8B, DType.BFloat16, budget, batch, 1.0 / 17);
        var plain = MicroBatchPlanner.Plan(Llama8B, DType.BFloat16, budget, batch, 1.0 / 17, checkpoint: false);
        Assert.True(plain.Tokens < MicroBatchPlanner.EfficientTokens, plain.ToString());
        Assert.True(plan.Checkpoint, plan.ToString());
        Assert.True(plan.Tokens > 4 * plain.Tokens, $"{plan} vs {plain}");
        Assert.True(plan.Tokens * plan.BytesPerToken <= budget);
        // A forced choice is kept; a budget too small for one token is no plan (Planner_refuses_a_budget_below_one_row).
        Assert.False(MicroBatchPlanner.Plan(Llama8B, DType.BFloat16, budget, batch, 1.0 / 17, checkpoint: false).Checkpoint);
        Assert.Throws<InsufficientDeviceMemoryException>(() => MicroBatchPlanner.Plan(Llama8B, DType.BFloat16, 0, batch, 1.0 / 17));
    }

    // The run of the bug: 1,024 fingerprints of 16-token keys and 1-token responses (rows of 17 tokens) in one batch.
    private const long Row = 17;
    private const long FullBatch = 1024 * Row;
    private const double Share = 1.0 / 17;
    private static long PlainRow => Row * MicroBatchPlanner.BytesPerToken(Llama8B, DType.BFloat16, false, Share);
    private static long CheckpointedRow => Row * MicroBatchPlanner.BytesPerToken(Llama8B, DType.BFloat16, true, Share);

    [Fact]
    public void Planner_refuses_a_budget_below_one_row()
    {
        // Nothing left after the training state (the 8B on an 80 GB card): an error that says what one row needs, with
        // the smallest need (checkpointed), not micro-batches of one token.
        var e = Assert.Throws<InsufficientDeviceMemoryException>(() => MicroBatchPlanner.Plan(Llama8B, DType.BFloat16, 0, FullBatch, Share, rowTokens: Row));
        Assert.Equal(Row, e.RowTokens);
        Assert.True(e.Checkpoint);
        Assert.Equal(CheckpointedRow, e.RowBytes);
        Assert.Equal(0, e.BudgetBytes);
        Assert.Contains("17 tokens", e.Message);
        Assert.Contains("with activation checkpointing", e.Message);
        // One byte short of a checkpointed row: auto has nothing smaller to turn to.
        e = Assert.Throws<InsufficientDeviceMemoryException>(() => MicroBatchPlanner.Plan(Llama8B, DType.BFloat16, CheckpointedRow - 1, FullBatch, Share, rowTokens: Row));
        Assert.False(e.CheckpointWouldFit);
        // Checkpointing forced off, with room for a checkpointed row but not a plain one: the error says checkpointing would fit.
        e = Assert.Throws<InsufficientDeviceMemoryException>(() => MicroBatchPlanner.Plan(Llama8B, DType.BFloat16, PlainRow - 1, FullBatch, Share, checkpoint: false, rowTokens: Row));
        Assert.False(e.Checkpoint);
        Assert.True(e.CheckpointWouldFit);
        Assert.Equal(PlainRow, e.RowBytes);
        // Forced on and still short.
        e = Assert.Throws<InsufficientDeviceMemoryException>(() => MicroBatchPlanner.Plan(Llama8B, DType.BFloat16, CheckpointedRow - 1, FullBatch, Share, checkpoint: true, rowTokens: Row));
        Assert.True(e.Checkpoint);
        Assert.False(e.CheckpointWouldFit);
        Assert.Throws<ArgumentOutOfRangeException>(() => MicroBatchPlanner.Plan(Llama8B, DType.BFloat16, 1L << 40, FullBatch, Share, rowTokens: 0));
    }

    [Fact]
    public void Planner_gives_one_row_per_micro_batch_when_the_budget_holds_exactly_one_row()
    {
        // Auto: a plain row does not fit, so checkpointing turns on, and holds exactly one row.
        var plan = MicroBatchPlanner.Plan(Llama8B, DType.BFloat16, CheckpointedRow, FullBatch, Share, rowTokens: Row);
        Assert.True(plan.Checkpoint, plan.ToString());
        Assert.Equal(Row, plan.Tokens);
        // Forced either way, with a budget of exactly one row in that mode.
        plan = MicroBatchPlanner.Plan(Llama8B, DType.BFloat16, PlainRow, FullBatch, Share, checkpoint: false, rowTokens: Row);
        Assert.False(plan.Checkpoint);
        Assert.Equal(Row, plan.Tokens);
        plan = MicroBatchPlanner.Plan(Llama8B, DType.BFloat16, CheckpointedRow, FullBatch, Share, checkpoint: true, rowTokens: Row);
        Assert.True(plan.Checkpoint);
        Assert.Equal(Row, plan.Tokens);
        // A row longer than EfficientTokens whose plain pass would not fit in a budget that holds EfficientTokens plain
        // tokens: auto checkpoints rather than plan plain micro-batches shorter than the row.
        long longRow = 2 * MicroBatchPlanner.EfficientTokens;
        long budget = (MicroBatchPlanner.EfficientTokens + 100) * MicroBatchPlanner.BytesPerToken(Llama1B, DType.BFloat16, false, Share);
        plan = MicroBatchPlanner.Plan(Llama1B, DType.BFloat16, budget, 4 * longRow, Share, rowTokens: longRow);
        Assert.True(plan.Checkpoint, plan.ToString());
        Assert.True(plan.Tokens >= longRow, plan.ToString());
    }

    [Fact]
    public void Planner_keeps_its_plan_when_a_row_fits()
    {
        // The plans of a budget that holds the rows are the plans made before rows were taken into account.
        foreach (long budget in new[] { 20L << 30, 100L << 30, 2L << 30 })
            foreach (bool? checkpoint in new bool?[] { null, false, true })
            {
                var withRow = MicroBatchPlanner.Plan(Llama8B, DType.BFloat16, budget, FullBatch, Share, checkpoint, rowTokens: Row);
                Assert.Equal(MicroBatchPlanner.Plan(Llama8B, DType.BFloat16, budget, FullBatch, Share, checkpoint), withRow);
                long per = MicroBatchPlanner.BytesPerToken(Llama8B, DType.BFloat16, withRow.Checkpoint, Share);
                Assert.Equal(Math.Min(budget / per, MicroBatchPlanner.MaxTokens), withRow.Tokens);
                Assert.True(withRow.Tokens >= Row);
            }
        // 20 GiB for the 8B: plain micro-batches would be small, so auto checkpoints (as Planner_checkpoints_when_plain_micro_batches_would_be_small).
        Assert.True(MicroBatchPlanner.Plan(Llama8B, DType.BFloat16, 20L << 30, FullBatch, Share, rowTokens: Row).Checkpoint);
        Assert.False(MicroBatchPlanner.Plan(Llama1B, DType.BFloat16, 100L << 30, FullBatch, Share, rowTokens: Row).Checkpoint);
    }

    [Fact]
    public void Forward_passes_hold_at_least_one_row_or_refuse()
    {
        long per = MicroBatchPlanner.ForwardBytesPerToken(Llama8B, DType.BFloat16);
        Assert.True(per > MicroBatchPlanner.LogitBytes(Llama8B, DType.BFloat16));
        // The held-out sequences of the bug: 4 prompt + 64 sampled tokens.
        Assert.Equal(68, MicroBatchPlanner.ForwardTokens(Llama8B, DType.BFloat16, 68 * per, 68));
        Assert.Equal(16 * 68, MicroBatchPlanner.ForwardTokens(Llama8B, DType.BFloat16, 16 * 68 * per + per - 1, 68));
        Assert.Equal(MicroBatchPlanner.MaxTokens, MicroBatchPlanner.ForwardTokens(Llama8B, DType.BFloat16, 1L << 50, 68));
        var e = Assert.Throws<InsufficientDeviceMemoryException>(() => MicroBatchPlanner.ForwardTokens(Llama8B, DType.BFloat16, 68 * per - 1, 68));
        Assert.Equal(68 * per, e.RowBytes);
        Assert.Contains("68 tokens", e.Message);
        Assert.Throws<InsufficientDeviceMemoryException>(() => MicroBatchPlanner.ForwardTokens(Llama8B, DType.BFloat16, 0, 1));
    }

    [Fact]
    public void Planner_estimates_grow_with_labels_layers_and_precision()
    {
        Assert.True(MicroBatchPlanner.BytesPerToken(Llama1B, DType.BFloat16, false, 1) > MicroBatchPlanner.BytesPerToken(Llama1B, DType.BFloat16, false, 0.05));
        Assert.True(MicroBatchPlanner.BytesPerToken(Llama8B, DType.BFloat16, false, 0) > MicroBatchPlanner.BytesPerToken(Llama1B, DType.BFloat16, false, 0));
        Assert.True(MicroBatchPlanner.BytesPerToken(Llama1B, DType.Float32, false, 0) > MicroBatchPlanner.BytesPerToken(Llama1B, DType.BFloat16, false, 0));
        Assert.True(MicroBatchPlanner.BytesPerToken(Llama8B, DType.BFloat16, true, 0) < MicroBatchPlanner.BytesPerToken(Llama8B, DType.BFloat16, false, 0) / 5);
        Assert.Throws<ArgumentOutOfRangeException>(() => MicroBatchPlanner.BytesPerToken(Llama1B, DType.BFloat16, false, 1.5));
    }

    [Fact]
    public void Budget_leaves_out_pending_state_and_a_reserve()
    {
        long gib = 1L << 30;
        // 140 GiB card, 120 free, 48 still to come (gradients and moments): reserve 7 GiB, 85 % of the remaining 65.
        Assert.Equal((long)(65 * gib * 0.85), MicroBatchPlanner.Budget(120 * gib, 140 * gib, 48 * gib));
        Assert.Equal(0, MicroBatchPlanner.Budget(10 * gib, 140 * gib, 48 * gib));
        Assert.Equal((long)(7 * gib * 0.85), MicroBatchPlanner.Budget(8 * gib, 8 * gib, 0));   // 1 GiB minimum reserve
    }
}
