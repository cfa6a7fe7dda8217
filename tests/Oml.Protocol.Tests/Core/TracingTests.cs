using Oml.Protocol.Claims;
using Oml.Protocol.Core;
using Oml.Protocol.Distribution;
using Oml.Protocol.Tracing;

namespace Oml.Protocol.Tests.Core;

public class TracingTests
{
    [Fact]
    public async Task TardosCodedCopiesTraceALeakToItsHost()
    {
        var ct = TestContext.Current.CancellationToken;
        using var n = new TestNet();
        var pool = Pools.Make(600, "tardos");
        var allocation = new TardosAllocation("tardos-allocation-secret-01"u8, pool.Count, TardosAllocation.DefaultCutoff(2));
        var omlizer = new Omlizer(pool, allocation);
        var copies = new[] { n.HostA, n.HostB, n.HostC, n.Outsider }.Select(h => n.License(h, omlizer)).ToList();
        Assert.Equal("tardos", n.S.LicenceOf(TestNet.Model, copies[0].Host)!.Allocation);

        // The third licensee's copy turns up behind an anonymous endpoint; only part of the pool is asked.
        var leak = copies[2];
        var trace = await LeakTracer.TraceAsync(n.S, TestNet.Model, pool, new TardosAccuser(allocation), ClaimTests.Answers(leak.Subset.Fingerprints),
            innocentBound: 1e-4, poolIndices: Enumerable.Range(0, 500), ct: ct);
        Assert.Null(trace.Observed[550]);
        Assert.Equal(leak.PoolIndices.Count(i => i < 500), trace.Observed.Count(o => o == true));
        Assert.Equal([leak.Host], trace.Accused.Select(h => h.Host));
        Assert.Equal(4, trace.Hosts.Count);

        // An endpoint serving a model without fingerprints accuses nobody.
        var clean = await LeakTracer.TraceAsync(n.S, TestNet.Model, pool, new TardosAccuser(allocation),
            (_, _) => Task.FromResult("Paris is the capital of France."), innocentBound: 1e-4, ct: ct);
        Assert.Empty(clean.Accused);

        // Only the owner files the accusation.
        n.Rejected(ProtocolErrorCode.Unauthorized, () => n.Engine.FileAccusation(n.Outsider, TestNet.Model, leak.Host, trace.ToJson()));
        n.Engine.FileAccusation(n.Owner, TestNet.Model, leak.Host, trace.ToJson());
        Assert.Equal(ClaimEvidence.Hash(trace.ToJson()), n.S.Accusations.Single().EvidenceHash);
    }

    [Fact]
    public void OmlizerRejectsAMismatchedAllocation()
    {
        var pool = Pools.Make(10);
        Assert.Throws<ArgumentException>(() => new Omlizer(pool, new RandomAllocation("allocation-secret-0123456789"u8, 11, 3)));
        Assert.Throws<ArgumentException>(() => Omlizer.Subset(pool, [3, 2]));
        Assert.Throws<ArgumentOutOfRangeException>(() => Omlizer.Subset(pool, [10]));
    }
}
