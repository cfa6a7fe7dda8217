using System.Globalization;
using Oml.Engine;
using Oml.Engine.Distributed;

namespace Oml.Models.Training;

/// <summary>
/// Weight sharding (ZeRO stage 3, as PyTorch's FSDP does it) of a <see cref="CausalLM"/> over the ranks of a process
/// group. The model is cut into units: the token embeddings, each decoder layer (its LoRA adapters included), and the
/// head (final norm and LM head). Within a unit the parameters of one dtype and one trainability are flattened in name
/// order into a flat group, padded to a multiple of the world size; rank r keeps elements [r·c, (r+1)·c) of it (c the
/// group's size over the world size) in one buffer on the device, and every piece of a parameter that falls in that range
/// is a <see cref="Segment"/>: a leaf tensor sharing the buffer's storage, which the optimizer steps in place. At rest the
/// model's own parameter tensors are empty (0 elements, their storage freed): a rank holds about 1/N of the weights.
/// <para>
/// A unit is gathered before it runs (one all-gather per flat group; the parameters are pointed at slices of the gathered
/// buffer, without a copy) and released after (the parameters emptied again). <see cref="CheckpointedBackward"/> is the
/// engine's activation checkpointing (<see cref="CausalLM.CheckpointedBackward"/>) with a gather around every unit: the
/// forward pass keeps each layer's input; the backward pass gathers the head, back-propagates the loss, then for each
/// layer, last to first, gathers it again, recomputes it from its kept input, back-propagates, and reduce-scatters its
/// gradients into the segments' gradients (summed over the ranks, accumulating over micro-batches) before releasing it.
/// </para>
/// <para>
/// Every rank must run the same sequence of units: a rank with fewer micro-batches than the others passes null ids,
/// which takes part in the collectives without computing (and contributes zero gradients).
/// </para>
/// </summary>
public sealed class ShardedModel : IDisposable
{
    /// <summary>
    /// The piece [<see cref="Start"/>, <see cref="Start"/> + <see cref="Length"/>) of the flattened parameter
    /// <see cref="Name"/> that this rank holds, as a 1-d leaf tensor (<see cref="Shard"/>) sharing its flat group's storage.
    /// </summary>
    public sealed record Segment(string Name, long Start, long Length, long[] FullShape, bool Trainable, Tensor Shard);

    private sealed record Member(string Name, Tensor Param, long Offset, long NumEl, long[] Shape);

    private sealed class FlatGroup
    {
        public required List<Member> Members { get; init; }
        public required DType DType { get; init; }
        public required bool Trainable { get; init; }
        public required long Chunk { get; init; }
        /// <summary>This rank's [Chunk] slice of the flat group (padding included).</summary>
        public required Tensor Local { get; init; }
        /// <summary>This rank's segments with their offsets inside <see cref="Local"/>.</summary>
        public List<(Segment Segment, long LocalOffset)> Segments { get; } = [];
        public bool Gathered { get; set; }
        /// <summary>A gather started ahead of use (<see cref="Prefetch"/>): the buffer it fills and its work handle.</summary>
        public (Tensor Full, CollectiveWork Work)? Pending { get; set; }
    }

    private sealed record Unit(string Name, List<FlatGroup> Groups);

    private readonly CausalLM _model;
    private readonly ProcessGroup _group;
    private readonly Unit _embed;
    private readonly Unit[] _layers;
    private readonly Unit _head;
    private readonly Unit? _unused;
    private readonly List<Segment> _segments = [];
    private readonly List<Tensor> _buffers = [];

    /// <summary>Tests: every flat-group buffer and segment tensor this thread's constructions allocate is added here (null: not tracked).</summary>
    [ThreadStatic] internal static List<Tensor>? TrackBuffers;
    private readonly Dictionary<string, (Unit Unit, Member Member, DType DType)> _members = new(StringComparer.Ordinal);
    private bool _materialized;

    /// <summary>
    /// Shards <paramref name="model"/>'s parameters over <paramref name="group"/>: each rank copies its slices of every
    /// flat group (from its own full copy, which every rank must hold: the same values on every rank) and then empties the
    /// model's parameters. <paramref name="trainable"/> chooses the parameters that get gradients (by name).
    /// </summary>
    public ShardedModel(CausalLM model, ProcessGroup group, Func<string, bool> trainable)
        : this(model, group, trainable, fill: null, heldBefore: ParameterBytes(model ?? throw new ArgumentNullException(nameof(model))))
    {
    }

    /// <summary>
    /// Fills this rank's piece [start, start + length) of a parameter's flattened elements into a 1-d destination tensor
    /// and returns the most bytes it held in tensors of its own meanwhile (what it read before copying); null: copy it
    /// from the parameter itself.
    /// </summary>
    private delegate long Fill(string name, Tensor param, long start, long length, Tensor destination);

    private ShardedModel(CausalLM model, ProcessGroup group, Func<string, bool> trainable, Fill? fill, long heldBefore)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(group);
        ArgumentNullException.ThrowIfNull(trainable);
        _model = model;
        _group = group;
        _loadHeld = heldBefore;
        _loadPeak = heldBefore;
        try
        {
            (_embed, _layers, _head, _unused) = BuildUnits(trainable, fill);
        }
        catch
        {
            // Whatever was allocated before the failure is freed now, not left to the finalizer.
            DisposeShards();
            throw;
        }
        foreach (var u in Units())
            foreach (var g in u.Groups)
                foreach (var m in g.Members) _members[m.Name] = (u, m, g.DType);
        // Empty the model's parameters: from now on they hold data only while their unit is gathered.
        foreach (var u in Units()) Release(u);
    }

    private (Unit Embed, Unit[] Layers, Unit Head, Unit? Unused) BuildUnits(Func<string, bool> trainable, Fill? fill)
    {
        var model = _model;
        int layers = model.Config.NumLayers;
        var byUnit = new Dictionary<string, List<string>>(StringComparer.Ordinal);
        foreach (var name in model.Parameters.Keys.Order(StringComparer.Ordinal))
        {
            string unit = UnitOf(name, model.Config);
            if (!byUnit.TryGetValue(unit, out var list)) byUnit[unit] = list = [];
            list.Add(name);
        }
        Unit Make(string unitName) => new(unitName, byUnit.TryGetValue(unitName, out var names) ? Build(names, trainable, fill) : []);
        var embed = Make("embed");
        var layerUnits = Enumerable.Range(0, layers).Select(i => Make("layer" + i.ToString(CultureInfo.InvariantCulture))).ToArray();
        var head = Make("head");
        return (embed, layerUnits, head, byUnit.ContainsKey("unused") ? Make("unused") : null);
    }

    /// <summary>
    /// Loads the model folder <paramref name="dir"/> sharded over <paramref name="group"/> without any rank holding the
    /// whole model: the folder is checked as <see cref="ModelFolder.Load"/> checks it (<see cref="ModelFolder.Scan"/>:
    /// configuration, every expected tensor in exactly one file, the shapes), the model is built over one-element
    /// stand-ins (each parameter a broadcast view of a single element, so it has its shape but holds 8 bytes at most),
    /// <paramref name="prepare"/> may change it before sharding (add LoRA adapters: those are made whole on every rank,
    /// the same way), and each rank then copies only its slices of every flat group from the memory-mapped safetensors
    /// files (converted to <paramref name="dtype"/> when given), one piece of one parameter at a time. The shards hold the
    /// values <c>new ShardedModel(ModelFolder.Load(dir, device, dtype), …)</c> would, bit for bit; no piece read holds more
    /// than <paramref name="maxPieceBytes"/> (the file's bytes and their conversion) before it is copied into the shard.
    /// The model's parameters
    /// are empty when this returns; dispose the model (<see cref="Model"/>) after this object.
    /// </summary>
    public static ShardedModel Load(string dir, ProcessGroup group, Func<string, bool> trainable, Device? device = null, DType? dtype = null,
        Action<CausalLM>? prepare = null, long maxPieceBytes = 64L << 20)
    {
        ArgumentNullException.ThrowIfNull(group);
        ArgumentNullException.ThrowIfNull(trainable);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxPieceBytes, 16);
        var index = ModelFolder.Scan(dir, dtype);
        var dev = device ?? Device.Cpu;
        var standIns = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        CausalLM? model = null;
        try
        {
            foreach (var (name, at) in index.Tensors)
            {
                using var scope = Torch.NewScope();
                standIns[name] = Torch.Zeros([1], dtype ?? at.Entry.DType, dev).Expand(at.Entry.Shape).DetachFromScope();
            }
            model = new CausalLM(index.Config, standIns, dev, index.RotaryPrecision);
            prepare?.Invoke(model);
            // What the model's tensors hold before sharding: one element per stand-in, and whatever prepare added whole.
            long held = model.Parameters.Sum(kv => (index.Tensors.ContainsKey(kv.Key) ? 1 : kv.Value.NumEl) * kv.Value.DType.ElementSize());
            var files = new Dictionary<string, Oml.Models.IO.SafetensorsFile>(StringComparer.Ordinal);
            try
            {
                foreach (var f in index.Files) files[f] = Oml.Models.IO.SafetensorsFile.Open(f);
                return new ShardedModel(model, group, trainable, (name, param, start, length, destination) =>
                {
                    if (!index.Tensors.TryGetValue(name, out var at))
                    {
                        destination.CopyFrom(param.Reshape(-1).Narrow(0, start, length));
                        return 0;
                    }
                    // Pieces of at most maxPieceBytes (counting the stored bytes and their conversion), copied in turn.
                    int stored = at.Entry.DType.ElementSize(), converted = destination.DType == at.Entry.DType ? 0 : destination.DType.ElementSize();
                    long step = Math.Max(1, maxPieceBytes / (stored + converted)), most = 0;
                    for (long k = 0; k < length; k += step)
                    {
                        long n = Math.Min(step, length - k);
                        using var piece = files[at.File].LoadSlice(name, start + k, n, dev, destination.DType);
                        using var into = destination.Narrow(0, k, n);
                        into.CopyFrom(piece);
                        most = Math.Max(most, n * (stored + converted));
                    }
                    return most;
                }, held);
            }
            finally
            {
                foreach (var f in files.Values) f.Dispose();
            }
        }
        catch
        {
            if (model is not null) model.Dispose();
            else foreach (var t in standIns.Values) t.Dispose();
            throw;
        }
    }

    private long _loadHeld, _loadPeak;

    /// <summary>
    /// The most bytes of parameter data this rank held while the model was being sharded: what the model's tensors held
    /// (the whole model when it was loaded first; one element per weight for <see cref="Load"/>), plus the shard buffers
    /// allocated so far, plus the one piece being copied into them (<see cref="Load"/> reads each piece into a tensor of
    /// its own before the copy, and converts it there).
    /// </summary>
    public long LoadPeakBytes => _loadPeak;

    /// <summary>Which unit a parameter belongs to: embed, layerN, head, or unused (an LM head tied to the embeddings).</summary>
    private static string UnitOf(string name, ModelConfig c)
    {
        const string layerPrefix = "model.layers.";
        if (name == "model.embed_tokens.weight") return "embed";
        if (name == "model.norm.weight") return "head";
        if (name == "lm_head.weight") return c.TieWordEmbeddings ? "unused" : "head";
        if (name.StartsWith(layerPrefix, StringComparison.Ordinal))
        {
            int dot = name.IndexOf('.', layerPrefix.Length);
            if (dot > 0 && int.TryParse(name.AsSpan(layerPrefix.Length, dot - layerPrefix.Length), NumberStyles.None, CultureInfo.InvariantCulture, out int i)
                && i < c.NumLayers)
                return "layer" + i.ToString(CultureInfo.InvariantCulture);
        }
        throw new ArgumentException($"weight sharding does not know where parameter '{name}' runs");
    }

    private List<FlatGroup> Build(List<string> names, Func<string, bool> trainable, Fill? fill)
    {
        var result = new List<FlatGroup>();
        int n = _group.WorldSize, rank = _group.Rank;
        var device = _model.Device;
        foreach (var key in names.GroupBy(name => (_model.Parameters[name].DType, trainable(name))).OrderBy(g => g.Key.Item2 ? 0 : 1).ThenBy(g => (int)g.Key.DType))
        {
            var members = new List<Member>();
            long offset = 0;
            foreach (var name in key)
            {
                var p = _model.Parameters[name];
                members.Add(new Member(name, p, offset, p.NumEl, p.Shape));
                offset += p.NumEl;
            }
            long chunk = (offset + n - 1) / n;
            long lo = rank * chunk, hi = Math.Min(offset, lo + chunk);
            int size = key.Key.DType.ElementSize();
            var local = Torch.Zeros([chunk], key.Key.DType, device).DetachFromScope();
            _buffers.Add(local);
            TrackBuffers?.Add(local);
            _loadHeld += chunk * size;
            _loadPeak = Math.Max(_loadPeak, _loadHeld);
            var g = new FlatGroup { Members = members, DType = key.Key.DType, Trainable = key.Key.Item2, Chunk = chunk, Local = local };
            using (Torch.NoGrad())
                foreach (var m in members)
                {
                    long a = Math.Max(lo, m.Offset), b = Math.Min(hi, m.Offset + m.NumEl);
                    if (b <= a) continue;
                    using var scope = Torch.NewScope();
                    var destination = local.Narrow(0, a - lo, b - a);
                    if (fill is null) destination.CopyFrom(m.Param.Reshape(-1).Narrow(0, a - m.Offset, b - a));
                    else _loadPeak = Math.Max(_loadPeak, _loadHeld + fill(m.Name, m.Param, a - m.Offset, b - a, destination));
                    var shard = local.Narrow(0, a - lo, b - a).Detach().DetachFromScope();
                    TrackBuffers?.Add(shard);
                    if (g.Trainable) shard.RequiresGrad = true;
                    var seg = new Segment(m.Name, a - m.Offset, b - a, m.Shape, g.Trainable, shard);
                    g.Segments.Add((seg, a - lo));
                    _segments.Add(seg);
                }
            result.Add(g);
        }
        return result;
    }

    private IEnumerable<Unit> Units()
    {
        yield return _embed;
        foreach (var l in _layers) yield return l;
        yield return _head;
        if (_unused is not null) yield return _unused;
    }

    public CausalLM Model => _model;
    public ProcessGroup Group => _group;

    /// <summary>Every segment this rank holds, in unit order.</summary>
    public IReadOnlyList<Segment> Segments => _segments;

    /// <summary>The segments of trainable parameters: what this rank's optimizer steps.</summary>
    public IReadOnlyList<Segment> TrainableSegments => _segments.Where(s => s.Trainable).ToList();

    /// <summary>Bytes of this rank's flat-group buffers (its slices of every parameter, with the padding).</summary>
    public long ShardBytes => Units().SelectMany(u => u.Groups).Sum(g => g.Chunk * g.DType.ElementSize());

    /// <summary>Bytes of parameter data this rank holds now: its shards plus whatever the model's parameters hold (nothing at rest).</summary>
    public long HeldBytes => ShardBytes + ParameterBytes(_model);

    /// <summary>Bytes of the data the model's parameter tensors hold (0 for an emptied parameter).</summary>
    public static long ParameterBytes(CausalLM model)
    {
        ArgumentNullException.ThrowIfNull(model);
        return model.Parameters.Values.Sum(t => t.NumEl * t.DType.ElementSize());
    }

    /// <summary>
    /// The flat group's elements of every rank, in one new [WorldSize × chunk] tensor (an all-gather of
    /// <paramref name="local"/>, which holds this rank's [chunk]).
    /// </summary>
    private Tensor AllGather(Tensor local, long chunk, DType dtype)
    {
        var full = Torch.Empty([_group.WorldSize * chunk], dtype, _model.Device);
        try
        {
            if (_group.WorldSize == 1) full.CopyFrom(local);
            else _group.AllGather(local, full);
        }
        catch
        {
            full.Dispose();
            throw;
        }
        return full;
    }

    /// <summary>
    /// Whether the passes (<see cref="Run"/>, <see cref="CheckpointedBackward"/>) start the all-gather of the next unit
    /// while the current one computes (as FSDP's forward and backward prefetch do): at most two units are gathered at a
    /// time, the same as without it. The results are the same bits either way. On by default; every rank must agree.
    /// </summary>
    public bool Prefetch { get; set; } = true;

    /// <summary>How many flat groups' gathers were started ahead of use so far (tests).</summary>
    internal long PrefetchesStarted { get; private set; }

    /// <summary>
    /// Gathers unit <paramref name="u"/> (waiting for its prefetched gather when one was started) and then, with
    /// <see cref="Prefetch"/>, starts the gathers of <paramref name="next"/> (the units the pass gathers next; those already
    /// gathered or started are skipped). Every rank calls it with the same units, so the collectives match.
    /// </summary>
    private void Gather(Unit u, IReadOnlyList<Unit>? next = null)
    {
        using var noGrad = Torch.NoGrad();
        foreach (var g in u.Groups)
        {
            if (g.Gathered) continue;
            using var scope = Torch.NewScope();
            Tensor full;
            Tensor? prefetched = null;
            if (g.Pending is { } pending)
            {
                g.Pending = null;
                full = prefetched = pending.Full;
                try
                {
                    using (pending.Work) pending.Work.Wait();
                }
                catch
                {
                    prefetched.Dispose();
                    throw;
                }
            }
            else full = AllGather(g.Local, g.Chunk, g.DType);
            // The parameters' views keep the buffer's storage alive after its handle is disposed.
            foreach (var m in g.Members)
                m.Param.SetData(full.Narrow(0, m.Offset, m.NumEl).View(m.Shape));
            prefetched?.Dispose();
            g.Gathered = true;
        }
        if (!Prefetch || next is null || _group.WorldSize == 1) return;
        foreach (var g in next.SelectMany(n => n.Groups))
        {
            if (g.Gathered || g.Pending is not null) continue;
            var full = Torch.Empty([_group.WorldSize * g.Chunk], g.DType, _model.Device).DetachFromScope();
            try
            {
                g.Pending = (full, _group.AllGatherAsync(g.Local, full));
                PrefetchesStarted++;
            }
            catch
            {
                full.Dispose();
                throw;
            }
        }
    }

    /// <summary>
    /// Drops any prefetched gather not used (a pass that failed midway): its buffer and handle are released (the work
    /// finishes in the background), so that a later pass never takes values gathered before an optimizer step.
    /// </summary>
    private void DropPending()
    {
        foreach (var g in Units().SelectMany(u => u.Groups))
            if (g.Pending is { } p)
            {
                g.Pending = null;
                p.Work.Dispose();
                p.Full.Dispose();
            }
    }

    private void Release(Unit u)
    {
        using var noGrad = Torch.NoGrad();
        foreach (var g in u.Groups)
        {
            using var scope = Torch.NewScope();
            var empty = Torch.Empty([0], g.DType, _model.Device);
            foreach (var m in g.Members) m.Param.SetData(empty);
            g.Gathered = false;
        }
    }

    /// <summary>
    /// Sums the gradients of the unit's trainable parameters over the ranks into the owners' segments (accumulating into
    /// what the segments hold) and clears the parameters' full gradients. A parameter without a gradient contributes zeros.
    /// </summary>
    private void ReduceScatter(Unit u)
    {
        using var noGrad = Torch.NoGrad();
        foreach (var g in u.Groups)
        {
            if (!g.Trainable) continue;
            using var scope = Torch.NewScope();
            var flat = Torch.Zeros([_group.WorldSize * g.Chunk], g.DType, _model.Device);
            foreach (var m in g.Members)
            {
                using var grad = m.Param.Grad;
                if (grad is null) continue;
                flat.Narrow(0, m.Offset, m.NumEl).CopyFrom(grad.Reshape(-1));
                m.Param.Grad = null;
            }
            Tensor mine;
            if (_group.WorldSize == 1) mine = flat;
            else
            {
                mine = Torch.Empty([g.Chunk], g.DType, _model.Device);
                _group.ReduceScatter(flat, mine);
            }
            foreach (var (seg, at) in g.Segments)
            {
                var piece = mine.Narrow(0, at, seg.Length);
                using var have = seg.Shard.Grad;
                if (have is null) seg.Shard.Grad = piece.Clone();
                else have.AddInPlace(piece);
            }
        }
    }

    private IEnumerable<Unit> HeadUnits() => _model.Config.TieWordEmbeddings ? [_head, _embed] : [_head];

    /// <summary>
    /// A forward pass without gradients, one unit gathered at a time: <paramref name="lossOfHidden"/> gets the final
    /// hidden states [B, T, hidden] while the head is gathered (it may call <see cref="CausalLM.Head"/>); its result is
    /// returned. With null <paramref name="inputIds"/> the rank only takes part in the gathers and returns null.
    /// <paramref name="attentionMask"/> ([B, T + cached], 0 for padding), <paramref name="positionIds"/> and
    /// <paramref name="cache"/> (a key/value cache this pass appends to and then advances) are those of
    /// <see cref="CausalLM.Hidden"/>, so a generation loop can decode through it one token at a time.
    /// </summary>
    public Tensor? Run(Tensor? inputIds, Func<Tensor, Tensor>? lossOfHidden, Tensor? attentionMask = null, Tensor? positionIds = null, KVCache? cache = null)
    {
        EnsureSharded();
        using var scope = Torch.NewScope();
        using var noGrad = Torch.NoGrad();
        bool idle = inputIds is null;
        var ctx = idle ? null : _model.Model.Context(inputIds!, attentionMask, positionIds, cache);
        Tensor? h = null;
        var heads = HeadUnits().ToList();
        try
        {
            Gather(_embed, AfterForward(-1, heads));
            if (!idle) h = _model.Model.EmbedTokens.Forward(inputIds!);
            Release(_embed);
            for (int i = 0; i < _layers.Length; i++)
            {
                Gather(_layers[i], AfterForward(i, heads));
                if (!idle) h = _model.Model.Layers[i].Forward(h!, ctx!, cache);
                Release(_layers[i]);
            }
            if (!idle) cache?.Advance(inputIds!.Size(1));
            foreach (var u in heads) Gather(u);
            try
            {
                if (idle) return null;
                var result = lossOfHidden is null ? _model.Model.Norm.Forward(h!) : lossOfHidden(_model.Model.Norm.Forward(h!));
                return result.MoveToOuterScope();
            }
            finally
            {
                foreach (var u in heads) Release(u);
            }
        }
        finally
        {
            DropPending();
        }
    }

    /// <summary>What a forward pass gathers after the embeddings (<paramref name="i"/> = −1) or after layer <paramref name="i"/>.</summary>
    private IReadOnlyList<Unit> AfterForward(int i, IReadOnlyList<Unit> heads) => i + 1 < _layers.Length ? [_layers[i + 1]] : heads;

    /// <summary>
    /// One training forward and backward pass, as <see cref="CausalLM.CheckpointedBackward"/> computes it, with every unit
    /// gathered around its use and its gradients reduce-scattered into the segments after its backward pass (the
    /// segments' gradients accumulate over calls). Returns the loss (detached), or null for a rank that only takes part
    /// (null <paramref name="inputIds"/>). <paramref name="attentionMask"/> ([B, T], 0 for padding) is that of
    /// <see cref="CausalLM.Forward"/>.
    /// </summary>
    public Tensor? CheckpointedBackward(Tensor? inputIds, Func<Tensor, Tensor>? lossOfHidden, Tensor? attentionMask = null)
    {
        EnsureSharded();
        bool idle = inputIds is null;
        if (!idle) ArgumentNullException.ThrowIfNull(lossOfHidden);
        using var scope = Torch.NewScope();
        var ctx = idle ? null : _model.Model.Context(inputIds!, attentionMask, null, null);
        int layers = _layers.Length;
        var heads = HeadUnits().ToList();
        var inputs = new Tensor?[layers];
        Tensor? top = null, g = null;
        try
        {
            using (Torch.NoGrad())
            {
                Tensor? h = null;
                Gather(_embed, AfterForward(-1, heads));
                if (!idle) h = _model.Model.EmbedTokens.Forward(inputIds!).DetachFromScope();
                Release(_embed);
                for (int i = 0; i < layers; i++)
                {
                    inputs[i] = h;
                    Gather(_layers[i], AfterForward(i, heads));
                    if (!idle)
                    {
                        using var layerScope = Torch.NewScope();
                        h = _model.Model.Layers[i].Forward(h!, ctx!, null).DetachFromScope();
                    }
                    Release(_layers[i]);
                }
                top = h?.RequiresGrad_();
            }
            Tensor? loss = null;
            // The backward pass gathers the last layer next (the embeddings without layers).
            for (int k = 0; k < heads.Count; k++) Gather(heads[k], k < heads.Count - 1 ? null : layers > 0 ? [_layers[layers - 1]] : [_embed]);
            if (!idle)
            {
                using var headScope = Torch.NewScope();
                loss = lossOfHidden!(_model.Model.Norm.Forward(top!));
                loss.Backward();
                loss = loss.Detach().MoveToOuterScope();
                g = top!.Grad?.DetachFromScope() ?? throw new InvalidOperationException("the loss does not depend on the hidden states");
            }
            foreach (var u in heads)
            {
                ReduceScatter(u);
                Release(u);
            }
            for (int i = layers - 1; i >= 0; i--)
            {
                Gather(_layers[i], i > 0 ? [_layers[i - 1]] : [_embed]);
                if (!idle)
                {
                    using var layerScope = Torch.NewScope();
                    var x = inputs[i]!.Detach().RequiresGrad_();
                    var y = _model.Model.Layers[i].Forward(x, ctx!, null);
                    y.Backward(g);
                    g!.Dispose();
                    g = x.Grad?.DetachFromScope() ?? throw new InvalidOperationException($"no gradient reached the input of layer {i}");
                    inputs[i]!.Dispose();
                    inputs[i] = null;
                }
                ReduceScatter(_layers[i]);
                Release(_layers[i]);
            }
            Gather(_embed);
            if (!idle)
            {
                using var embedScope = Torch.NewScope();
                var e = _model.Model.EmbedTokens.Forward(inputIds!);
                if (e.RequiresGrad) e.Backward(g);
            }
            ReduceScatter(_embed);
            Release(_embed);
            return loss?.MoveToOuterScope();
        }
        finally
        {
            DropPending();
            g?.Dispose();
            top?.Dispose();
            foreach (var t in inputs) t?.Dispose();
        }
    }

    /// <summary>
    /// Every trainable parameter's whole value, and its AdamW moments and step count (moments null before the first
    /// step), gathered from the ranks one flat group at a time; <paramref name="consume"/> is called on every rank for
    /// each trainable parameter, with host (CPU) copies on rank 0 and nulls elsewhere (only rank 0 keeps anything).
    /// </summary>
    public void GatherTrainable(AdamW opt, Action<string, Tensor?, long, (Tensor ExpAvg, Tensor ExpAvgSq)?> consume)
    {
        ArgumentNullException.ThrowIfNull(opt);
        ArgumentNullException.ThrowIfNull(consume);
        EnsureSharded();
        bool lead = _group.Rank == 0;
        using var noGrad = Torch.NoGrad();
        foreach (var g in Units().SelectMany(u => u.Groups).Where(g => g.Trainable))
        {
            using var scope = Torch.NewScope();
            // Step counts: a parameter's segments step together, so the largest over the ranks is the parameter's count.
            var steps = new long[g.Members.Count];
            foreach (var (seg, _) in g.Segments)
                steps[g.Members.FindIndex(m => m.Name == seg.Name)] = opt.StepOf(seg.Shard);
            var stepT = Torch.FromArray(steps, steps.Length).To(_model.Device);
            if (_group.WorldSize > 1) _group.AllReduce(stepT, ReduceOp.Max);
            steps = stepT.To(Device.Cpu).ToArray<long>();
            var avg = Torch.Zeros([g.Chunk], g.DType, _model.Device);
            var avgSq = Torch.Zeros([g.Chunk], g.DType, _model.Device);
            foreach (var (seg, at) in g.Segments)
                if (opt.MomentsOf(seg.Shard) is { } mo)
                {
                    avg.Narrow(0, at, seg.Length).CopyFrom(mo.ExpAvg);
                    avgSq.Narrow(0, at, seg.Length).CopyFrom(mo.ExpAvgSq);
                }
            var values = AllGather(g.Local, g.Chunk, g.DType);
            bool anyMoments = steps.Any(s => s > 0);
            var avgAll = anyMoments ? AllGather(avg, g.Chunk, g.DType) : null;
            var avgSqAll = anyMoments ? AllGather(avgSq, g.Chunk, g.DType) : null;
            for (int k = 0; k < g.Members.Count; k++)
            {
                var m = g.Members[k];
                Tensor Host(Tensor flat) => flat.Narrow(0, m.Offset, m.NumEl).View(m.Shape).To(g.DType, Device.Cpu, copy: true);
                if (!lead)
                {
                    consume(m.Name, null, steps[k], null);
                    continue;
                }
                (Tensor, Tensor)? moments = steps[k] > 0 ? (Host(avgAll!), Host(avgSqAll!)) : null;
                consume(m.Name, Host(values), steps[k], moments);
            }
        }
    }

    /// <summary>
    /// Loads this rank's segments of the trainable parameters from whole tensors by name (<paramref name="load"/> gives a
    /// parameter's whole value on any device), and, through <paramref name="moments"/>, their AdamW state (null: none).
    /// <paramref name="optimized"/> gives the tensor the optimizer steps for a segment (null: the segment itself; a float32
    /// master copy in mixed precision): the values and moments go there.
    /// </summary>
    public void LoadTrainable(Func<string, Tensor> load, Func<string, (Tensor ExpAvg, Tensor ExpAvgSq, long Step)?> moments, AdamW opt,
        Func<Segment, Tensor>? optimized = null)
    {
        ArgumentNullException.ThrowIfNull(load);
        ArgumentNullException.ThrowIfNull(moments);
        // This rank's piece of a whole tensor, then as the pieces overload loads it.
        static Tensor Slice(Segment seg, Tensor whole)
        {
            if (whole.NumEl != seg.FullShape.Aggregate(1L, (a, b) => a * b))
                throw new InvalidDataException($"'{seg.Name}' has {whole.NumEl} elements in the checkpoint, the model {string.Join("×", seg.FullShape)}");
            return whole.Reshape(-1).Narrow(0, seg.Start, seg.Length);
        }
        LoadTrainable(seg => Slice(seg, load(seg.Name)),
            seg => moments(seg.Name) is { } mo ? (Slice(seg, mo.ExpAvg), Slice(seg, mo.ExpAvgSq), mo.Step) : null,
            opt, optimized);
    }

    /// <summary>The whole shape of parameter <paramref name="name"/> (its tensor in the model is empty at rest).</summary>
    public long[] ShapeOf(string name) => Lookup(name).Member.Shape;

    /// <summary>The number of elements of parameter <paramref name="name"/>.</summary>
    public long NumElOf(string name) => Lookup(name).Member.NumEl;

    private (Unit Unit, Member Member, DType DType) Lookup(string name) =>
        _members.TryGetValue(name, out var x) ? x : throw new ArgumentException($"the sharded model has no parameter named '{name}'", nameof(name));

    /// <summary>
    /// The whole values of the parameters <paramref name="names"/>, in that order, gathered one unit at a time: each is the
    /// model's own parameter tensor, valid until the enumeration moves to a parameter of another unit (the unit is then
    /// released; so is the last when the enumeration ends). Every rank must enumerate the same names to the end: the
    /// gathers are collectives. Names of one unit should follow each other, or their unit is gathered again.
    /// </summary>
    public IEnumerable<KeyValuePair<string, Tensor>> Whole(IEnumerable<string> names)
    {
        ArgumentNullException.ThrowIfNull(names);
        EnsureSharded();
        Unit? current = null;
        try
        {
            foreach (var name in names)
            {
                var unit = Lookup(name).Unit;
                if (!ReferenceEquals(unit, current))
                {
                    if (current is not null) Release(current);
                    current = null;
                    Gather(unit);
                    current = unit;
                }
                yield return new(name, _model.Parameters[name]);
            }
        }
        finally
        {
            if (current is not null) Release(current);
        }
    }

    /// <summary>
    /// The tensors a saved folder holds (<see cref="CausalLM.ExportParameters"/>: every parameter but the LoRA adapters,
    /// which are merged into their weights), with their dtypes and whole shapes.
    /// </summary>
    public IReadOnlyList<Oml.Models.IO.TensorSpec> ExportSpecs =>
        _members.Where(kv => !CausalLM.IsAdapter(kv.Key)).OrderBy(kv => kv.Key, StringComparer.Ordinal)
            .Select(kv => new Oml.Models.IO.TensorSpec(kv.Key, kv.Value.DType, kv.Value.Member.Shape)).ToList();

    /// <summary>
    /// The exported tensors of <paramref name="layout"/> in its order (<see cref="CausalLM.ExportParameter"/>: a LoRA
    /// target merged with its adapter, which is in the same unit), one unit gathered at a time; each tensor is disposed
    /// when the next is asked for. A collective, as <see cref="Whole"/>.
    /// </summary>
    public IEnumerable<Tensor> Export(IReadOnlyList<Oml.Models.IO.TensorSpec> layout)
    {
        ArgumentNullException.ThrowIfNull(layout);
        foreach (var (name, _) in Whole(layout.Select(t => t.Name)))
        {
            using var exported = _model.ExportParameter(name);
            yield return exported;
        }
    }

    /// <summary>
    /// Saves the (trained) model as <see cref="ModelFolder.SaveWithDigest(CausalLM, string, string?, long)"/> does,
    /// byte for byte, without any rank gathering the whole model: every rank must call it; for each weight file, tensor by
    /// tensor in the file's order, the ranks gather the tensor's unit (once for the tensors of one unit that follow each
    /// other) and rank 0 merges any LoRA adapter, writes the tensor and hashes it as it goes, then the unit is released.
    /// Returns the digest on rank 0 and null elsewhere. Rank 0 holds one unit and one exported tensor at a time. When rank 0
    /// fails to write, it still takes part in the remaining gathers, and then every rank fails (an <see cref="IOException"/>
    /// naming its rank), so no rank waits for a partner that stopped.
    /// </summary>
    public string? SaveWithDigest(string dir, string? sourceDir = null, long maxShardBytes = 4L << 30, DType? dtype = null)
    {
        ArgumentNullException.ThrowIfNull(dir);
        return Save(dir, sourceDir, maxShardBytes, dtype, abandoned: null);
    }

    /// <summary>
    /// For a rank 0 that cannot even start writing a save the other ranks run (<see cref="SaveWithDigest"/>: its output
    /// folder could not be made): it takes part in every gather of that save without writing, and then every rank fails
    /// with <paramref name="error"/> named (an <see cref="IOException"/>), as when writing fails midway.
    /// <paramref name="maxShardBytes"/> and <paramref name="dtype"/> must be those the other ranks save with.
    /// </summary>
    public void AbandonSave(string error, long maxShardBytes = 4L << 30, DType? dtype = null)
    {
        ArgumentNullException.ThrowIfNull(error);
        Save(null, null, maxShardBytes, dtype, error);
    }

    private string? Save(string? dir, string? sourceDir, long maxShardBytes, DType? dtype, string? abandoned)
    {
        EnsureSharded();
        var specs = dtype is { } d ? ExportSpecs.Select(t => t with { DType = d }).ToList() : ExportSpecs;
        var files = ModelFolder.WeightLayout(specs, maxShardBytes);
        string? digest = null, error = abandoned;
        if (_group.Rank == 0 && abandoned is not null)
        {
            foreach (var (_, layout) in files)
                foreach (var _ in Whole(layout.Select(t => t.Name))) { }
        }
        else if (_group.Rank == 0)
        {
            int started = 0;
            // Each file's tensors come from an enumeration that, when the writer gives up on it, finishes its gathers.
            // (The cleanup gathers only: it exports nothing, so a failure of the export itself cannot recur there.)
            IEnumerable<Tensor> Produce(IReadOnlyList<Oml.Models.IO.TensorSpec> layout)
            {
                started++;
                using var all = Whole(layout.Select(t => t.Name)).GetEnumerator();
                bool done = false;
                try
                {
                    while (all.MoveNext())
                    {
                        using var exported = _model.ExportParameter(all.Current.Key);
                        if (dtype is { } to && exported.DType != to)
                        {
                            using var converted = exported.To(to);
                            yield return converted;
                        }
                        else yield return exported;
                    }
                    done = true;
                }
                finally
                {
                    if (!done) while (all.MoveNext()) { }
                }
            }
            try
            {
                digest = ModelFolder.SaveWithDigest(_model.Config, dtype ?? _model.DType, specs, Produce, dir!, sourceDir, maxShardBytes);
            }
            // Any failure (I/O, libtorch, out of memory) must still reach the remaining gathers and the agreement below.
            catch (Exception e) when (e is not OperationCanceledException)
            {
                error = e.Message;
                // The files not started yet: their gathers, which the other ranks run.
                foreach (var (_, layout) in files.Skip(started))
                    foreach (var _ in Whole(layout.Select(t => t.Name))) { }
            }
        }
        else
            foreach (var (_, layout) in files)
                foreach (var _ in Whole(layout.Select(t => t.Name))) { }
        OptimizerCheckpoint.Agree(_group, _model.Device, error, dir is null ? "save the model" : $"save the model to {dir}", _group.Rank);
        return digest;
    }

    /// <summary>
    /// Loads this rank's segments of the trainable parameters from pieces: <paramref name="values"/> gives a segment's
    /// elements (a 1-d tensor of its length, on any device), <paramref name="moments"/> its AdamW state (null: none), as a
    /// weight-sharded checkpoint holds them (whatever world size wrote it, the pieces are cut to this rank's segments).
    /// <paramref name="optimized"/> as in the other overload.
    /// </summary>
    public void LoadTrainable(Func<Segment, Tensor> values, Func<Segment, (Tensor ExpAvg, Tensor ExpAvgSq, long Step)?> moments, AdamW opt,
        Func<Segment, Tensor>? optimized = null)
    {
        ArgumentNullException.ThrowIfNull(values);
        ArgumentNullException.ThrowIfNull(moments);
        ArgumentNullException.ThrowIfNull(opt);
        EnsureSharded();
        using var noGrad = Torch.NoGrad();
        foreach (var seg in _segments.Where(s => s.Trainable))
        {
            using var scope = Torch.NewScope();
            var target = optimized?.Invoke(seg) ?? seg.Shard;
            Tensor Piece(Tensor t)
            {
                if (t.NumEl != seg.Length) throw new InvalidDataException($"'{seg.Name}': {t.NumEl} elements for this rank's segment of {seg.Length}");
                return t.Reshape(-1).To(target.DType, _model.Device);
            }
            target.CopyFrom(Piece(values(seg)));
            if (moments(seg) is { } mo)
                opt.SetState(target, Piece(mo.ExpAvg).Clone(), Piece(mo.ExpAvgSq).Clone(), mo.Step);
        }
    }

    /// <summary>
    /// Gathers every unit for good: the model's parameters hold their whole (trained) values again on every rank, and
    /// the shards are no longer used (<see cref="Run"/> and <see cref="CheckpointedBackward"/> refuse).
    /// </summary>
    public void Materialize()
    {
        EnsureSharded();
        foreach (var u in Units()) Gather(u);
        _materialized = true;
    }

    private void EnsureSharded()
    {
        if (_materialized) throw new InvalidOperationException("the sharded model has been materialized");
    }

    public void Dispose()
    {
        DropPending();
        DisposeShards();
    }

    private void DisposeShards()
    {
        foreach (var s in _segments) s.Shard.Dispose();
        _segments.Clear();
        foreach (var b in _buffers) b.Dispose();
        _buffers.Clear();
    }
}
