using Oml.Engine;
using Oml.Engine.Distributed;

namespace Oml.Models.Training;

/// <summary>
/// The collectives of a sharded optimizer (ZeRO-2 at the granularity of parameters): each parameter's gradient summed
/// into its owner's copy, clipping by the global norm over the owners' gradients, and the owners' new values broadcast.
/// </summary>
public static class OptimizerSharding
{
    /// <summary>
    /// Sums each parameter's gradient over the ranks into its owner's copy (a rank without rows contributes zeros) and
    /// frees the gradients this rank does not own.
    /// </summary>
    public static void ReduceToOwners(ProcessGroup group, IReadOnlyList<Tensor> parameters, IReadOnlyList<int> owner)
    {
        ArgumentNullException.ThrowIfNull(group);
        var grads = new List<Tensor>(parameters.Count);
        try
        {
            foreach (var p in parameters)
            {
                if (p.Grad is { } g) { grads.Add(g); continue; }
                using (Torch.NoGrad())
                using (var zeros = Torch.ZerosLike(p))
                    p.Grad = zeros;
                grads.Add(p.Grad!);
            }
            for (int r = 0; r < group.WorldSize; r++)
                group.Reduce(grads.Where((_, i) => owner[i] == r).ToList(), root: r);
            for (int i = 0; i < parameters.Count; i++)
                if (owner[i] != group.Rank) parameters[i].Grad = null;
        }
        finally
        {
            foreach (var g in grads) g.Dispose();
        }
    }

    /// <summary>
    /// Clips the gradients of the parameters this rank owns by the global norm (the squared norms summed over the
    /// ranks), as <see cref="Torch.ClipGradNormTensor"/> does for whole gradients: each scaled by
    /// min(1, max / (norm + 1e-6)). Returns the norm before clipping as a float32 scalar on <paramref name="device"/>,
    /// without reading it.
    /// </summary>
    public static Tensor ClipByGlobalNorm(ProcessGroup group, Device device, IReadOnlyList<Tensor> owned, double maxNorm)
    {
        ArgumentNullException.ThrowIfNull(group);
        using var noGrad = Torch.NoGrad();
        Tensor total;
        using (var scope = Torch.NewScope())
        {
            var sq = Torch.Zeros([], DType.Float32, device);
            foreach (var p in owned)
                using (var g = p.Grad)
                    if (g is not null) sq = sq + g.To(DType.Float32).Square().Sum();
            group.AllReduce(sq);
            total = sq.Sqrt().MoveToOuterScope();
        }
        using (var scope = Torch.NewScope())
        {
            var coef = (maxNorm / (total + 1e-6)).Clamp(max: 1.0);
            foreach (var p in owned)
                using (var g = p.Grad)
                    g?.MulInPlace(coef.To(g.DType));
        }
        return total;
    }

    /// <summary>Overwrites every rank's copy of each parameter with its owner's.</summary>
    public static void BroadcastFromOwners(ProcessGroup group, IReadOnlyList<Tensor> parameters, IReadOnlyList<int> owner)
    {
        ArgumentNullException.ThrowIfNull(group);
        for (int r = 0; r < group.WorldSize; r++)
            group.Broadcast(parameters.Where((_, i) => owner[i] == r).ToList(), root: r);
    }
}
