using Oml.Models.Training;

namespace Oml.Models.Tests;

/// <summary>Training data that signals a stop when the trainer asks for the rows of step <c>stopAt</c> (1-based).</summary>
internal sealed class StopAtStep(TrainingData inner, int stopAt, CancellationTokenSource stop) : TrainingData
{
    public override string Digest => inner.Digest;
    public override long StepsPerEpoch(int rowsPerStep) => inner.StepsPerEpoch(rowsPerStep);
    public override IEnumerable<TrainingBatch> EvaluationBatches(int batch, int maxRows) => inner.EvaluationBatches(batch, maxRows);
    public override TrainingBatch[] Step(long step, int batch, int accumulation)
    {
        if (step + 1 == stopAt) stop.Cancel();
        return inner.Step(step, batch, accumulation);
    }
}
