using static Oml.Engine.Native;

namespace Oml.Engine;

/// <summary>A set of parameters sharing optimiser settings; null settings fall back to the optimiser's defaults.</summary>
public sealed class ParamGroup
{
    public ParamGroup(IEnumerable<Tensor> parameters, double? lr = null, double? weightDecay = null)
    {
        Parameters = parameters.ToList();
        LearningRate = lr;
        WeightDecay = weightDecay;
    }

    public IReadOnlyList<Tensor> Parameters { get; }
    public double? LearningRate { get; set; }
    public double? WeightDecay { get; set; }
}

/// <summary>
/// Adam with decoupled weight decay (Loshchilov &amp; Hutter), with the same update as torch.optim.AdamW:
/// p ← p·(1 − lr·wd); m ← β₁m + (1−β₁)g; v ← β₂v + (1−β₂)g²; p ← p − lr·(m/(1−β₁ᵗ)) / (√(v/(1−β₂ᵗ)) + ε).
/// Parameters without a gradient are skipped and their step count does not advance.
/// One native call per group per step; on CUDA with libtorch 2.1+ that call is libtorch's fused kernel.
/// </summary>
public sealed class AdamW : IDisposable
{
    private sealed class State(Tensor expAvg, Tensor expAvgSq)
    {
        public readonly Tensor ExpAvg = expAvg;
        public readonly Tensor ExpAvgSq = expAvgSq;
        public long Step;
    }

    private readonly Dictionary<Tensor, State> _state = new(ReferenceEqualityComparer.Instance);

    public AdamW(IEnumerable<Tensor> parameters, double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8,
        double weightDecay = 1e-2)
        : this([new ParamGroup(parameters)], lr, beta1, beta2, eps, weightDecay) { }

    public AdamW(IEnumerable<ParamGroup> groups, double lr = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8,
        double weightDecay = 1e-2)
    {
        if (lr < 0) throw new ArgumentOutOfRangeException(nameof(lr), lr, "learning rate must be non-negative");
        if (beta1 is < 0 or >= 1) throw new ArgumentOutOfRangeException(nameof(beta1), beta1, "beta1 must be in [0, 1)");
        if (beta2 is < 0 or >= 1) throw new ArgumentOutOfRangeException(nameof(beta2), beta2, "beta2 must be in [0, 1)");
        if (eps < 0) throw new ArgumentOutOfRangeException(nameof(eps), eps, "eps must be non-negative");
        Groups = groups.ToList();
        LearningRate = lr;
        Beta1 = beta1;
        Beta2 = beta2;
        Eps = eps;
        WeightDecay = weightDecay;
        foreach (var g in Groups)
            foreach (var p in g.Parameters)
                if (!p.RequiresGrad) throw new ArgumentException($"parameter {p} does not require grad", nameof(groups));
    }

    public IReadOnlyList<ParamGroup> Groups { get; }
    public double LearningRate { get; set; }
    public double Beta1 { get; }
    public double Beta2 { get; }
    public double Eps { get; }
    public double WeightDecay { get; set; }

    /// <summary>Step count of one parameter (0 before its first update).</summary>
    public long StepOf(Tensor parameter) => _state.TryGetValue(parameter, out var s) ? s.Step : 0;

    /// <summary>First and second moment estimates of a parameter, or null before its first update. Not copies: do not dispose.</summary>
    public (Tensor ExpAvg, Tensor ExpAvgSq)? MomentsOf(Tensor parameter) =>
        _state.TryGetValue(parameter, out var s) ? (s.ExpAvg, s.ExpAvgSq) : null;

    /// <summary>Restores the moments and step of a parameter (for resuming from a checkpoint).</summary>
    public void SetState(Tensor parameter, Tensor expAvg, Tensor expAvgSq, long step)
    {
        if (_state.Remove(parameter, out var old)) { old.ExpAvg.Dispose(); old.ExpAvgSq.Dispose(); }
        var st = new State(expAvg.Detach().DetachFromScope(), expAvgSq.Detach().DetachFromScope()) { Step = step };
        _state[parameter] = st;
    }

    public unsafe void Step()
    {
        using var noGrad = Torch.NoGrad();
        foreach (var g in Groups)
        {
            var ps = new List<Tensor>();
            var ms = new List<Tensor>();
            var vs = new List<Tensor>();
            var steps = new List<long>();
            foreach (var p in g.Parameters)
            {
                using (var grad = p.Grad)
                    if (grad is null) continue;
                if (!_state.TryGetValue(p, out var st))
                {
                    st = new State(Torch.ZerosLike(p).DetachFromScope(), Torch.ZerosLike(p).DetachFromScope());
                    _state[p] = st;
                }
                st.Step++;
                ps.Add(p);
                ms.Add(st.ExpAvg);
                vs.Add(st.ExpAvgSq);
                steps.Add(st.Step);
            }
            if (ps.Count == 0) continue;
            using var hp = new HandleList(ps);
            using var hm = new HandleList(ms);
            using var hv = new HandleList(vs);
            var stepArr = steps.ToArray();
            fixed (IntPtr* pp = hp.Ptrs)
            fixed (IntPtr* pm = hm.Ptrs)
            fixed (IntPtr* pv = hv.Ptrs)
            fixed (long* pst = stepArr)
                Check(oml_adamw_step(pp, pm, pv, pst, ps.Count, g.LearningRate ?? LearningRate, Beta1, Beta2, Eps,
                    g.WeightDecay ?? WeightDecay));
        }
    }

    /// <summary>Clears the gradients (sets them to none, as PyTorch does by default).</summary>
    public void ZeroGrad()
    {
        foreach (var g in Groups)
            foreach (var p in g.Parameters)
                p.Grad = null;
    }

    public void Dispose()
    {
        foreach (var s in _state.Values)
        {
            s.ExpAvg.Dispose();
            s.ExpAvgSq.Dispose();
        }
        _state.Clear();
    }
}
