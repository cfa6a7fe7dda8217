namespace Oml.Models;

/// <summary>
/// An <see cref="IProgress{T}"/> that reports at once, on the calling thread, in order. (The framework's
/// <see cref="Progress{T}"/> posts each report to the synchronization context or the thread pool, so a console
/// program sees reports late and out of order.)
/// </summary>
public sealed class InlineProgress<T>(Action<T> report) : IProgress<T>
{
    public void Report(T value) => report(value);
}
