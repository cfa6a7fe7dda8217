using Oml.Protocol.Chain;

namespace Oml.Chain.Tests;

/// <summary>
/// Model registration on the chain is a commitment and, a delay later, its reveal (OmlProtocol.commitRegistration and
/// registerModel): a model id is first come, first served, so a registerModel seen in the mempool must not be something
/// another account can copy and get mined first. Each test names what it would let through without the rule.
/// </summary>
public sealed class RegistrationTests(AnvilFixture fx)
{
    private const string Id = "acme/front-run-me";
    private static readonly string Weights = World.Digest("weights of " + Id);
    private static readonly string Root = World.Digest("fingerprint root of " + Id);

    private static Task<byte[]> CommitmentAsync(OmlChainClient c, byte[] salt) =>
        c.RegistrationCommitmentAsync(c.Address, Id, Convert.FromHexString(Weights[2..]), Convert.FromHexString(Root[2..]), 64, salt);

    private static async Task<string> RevertOf(Func<Task> action) => (await Assert.ThrowsAsync<ChainRevertException>(action)).ErrorName;

    [Fact]
    public async Task A_registration_copied_from_the_mempool_is_refused_and_the_owner_keeps_the_id()
    {
        var w = await World.CreateAsync(fx.Node);
        var attacker = await w.NewAccountAsync("registration-front-runner");
        var salt = w.Owner.RegistrationSalt(Id, Convert.FromHexString(Weights[2..]), Convert.FromHexString(Root[2..]), 64);
        var commitment = await CommitmentAsync(w.Owner, salt);
        await w.Owner.CommitRegistrationAsync(commitment);

        // The owner's reveal, copied word for word by another account (same id, digest, root and salt): that account
        // committed nothing, so the copy reverts (registerModel without the commitment check would register it).
        Assert.Equal("RegistrationNotCommitted", await RevertOf(() =>
            attacker.RevealRegistrationAsync(Id, Weights, Root, 64, 10, 0, salt)));
        // Copying the commitment's bytes too does not help: the reveal recomputes it with the sender's address.
        await attacker.CommitRegistrationAsync(commitment);
        await fx.Node.IncreaseTimeAsync(1);
        Assert.Equal("RegistrationNotCommitted", await RevertOf(() =>
            attacker.RevealRegistrationAsync(Id, Weights, Root, 64, 10, 0, salt)));
        // Nor does committing to the same values under its own address: it needs a later block than its commitment,
        // by when the owner's reveal, already sent, has landed.
        var own = await CommitmentAsync(attacker, salt);
        await attacker.CommitRegistrationAsync(own);
        var registered = await w.Owner.RevealRegistrationAsync(Id, Weights, Root, 64, 10, 0, salt);
        Assert.Contains(registered.Events, e => e.Name == "ModelRegistered");
        Assert.Equal("ModelExists", await RevertOf(() => attacker.RevealRegistrationAsync(Id, Weights, Root, 64, 10, 0, salt)));
        Assert.Equal(w.Owner.Address, (await w.Owner.ModelOwnerAsync(Id)).ToLowerInvariant());
        // The commitment is spent: revealing it again finds none.
        Assert.Equal((0L, 0L), await w.Owner.RegistrationCommitOfAsync(w.Owner.Address, commitment));
    }

    [Fact]
    public async Task The_reveal_waits_the_deployments_delay_and_the_commitment_expires_after_a_day()
    {
        var w = await World.CreateAsync(fx.Node, registrationDelay: 600);
        Assert.Equal(600, await w.Owner.RegistrationDelayAsync());
        var salt = w.Owner.RegistrationSalt(Id, Convert.FromHexString(Weights[2..]), Convert.FromHexString(Root[2..]), 64);
        var commitment = await CommitmentAsync(w.Owner, salt);
        await w.Owner.CommitRegistrationAsync(commitment);
        // A second commitment of the same bytes while the first is live is refused.
        Assert.Equal("RegistrationAlreadyCommitted", await RevertOf(() => w.Owner.CommitRegistrationAsync(commitment)));
        Assert.Equal("RegistrationTooEarly", await RevertOf(() => w.Owner.RevealRegistrationAsync(Id, Weights, Root, 64, 10, 0, salt)));
        await fx.Node.IncreaseTimeAsync(300);
        Assert.Equal("RegistrationTooEarly", await RevertOf(() => w.Owner.RevealRegistrationAsync(Id, Weights, Root, 64, 10, 0, salt)));
        // Past the commitment's lifetime (a day) it has expired; committing again restarts the clock.
        await fx.Node.IncreaseTimeAsync(24 * 3600);
        Assert.Equal("RegistrationCommitExpired", await RevertOf(() => w.Owner.RevealRegistrationAsync(Id, Weights, Root, 64, 10, 0, salt)));
        await w.Owner.CommitRegistrationAsync(commitment);
        await fx.Node.IncreaseTimeAsync(601);
        await w.Owner.RevealRegistrationAsync(Id, Weights, Root, 64, 10, 0, salt);
        Assert.Equal(w.Owner.Address, (await w.Owner.ModelOwnerAsync(Id)).ToLowerInvariant());
    }

    [Fact]
    public async Task Registering_commits_waits_and_reveals_and_resumes_a_commitment_left_by_a_crash()
    {
        // With a real delay (two seconds of the node's clock, which anvil keeps with the wall clock): the one call waits.
        var w = await World.CreateAsync(fx.Node, registrationDelay: 2);
        var heard = new List<string>();
        var started = DateTime.UtcNow;
        await w.Owner.RegisterModelAsync(Id, Weights, Root, 64, 10, 0, progress: heard.Add);
        Assert.True(DateTime.UtcNow - started >= TimeSpan.FromSeconds(1.5), $"registered after {(DateTime.UtcNow - started).TotalSeconds:F1} s");
        Assert.Contains(heard, h => h.Contains("committed to registering", StringComparison.Ordinal));
        Assert.Equal(w.Owner.Address, (await w.Owner.ModelOwnerAsync(Id)).ToLowerInvariant());

        // A crash after the commitment: the next run derives the same salt, finds the commitment and only reveals.
        var second = "acme/second";
        var salt = w.Owner.RegistrationSalt(second, Convert.FromHexString(Weights[2..]), new byte[32], 0);
        var commitment = await w.Owner.RegistrationCommitmentAsync(w.Owner.Address, second, Convert.FromHexString(Weights[2..]), new byte[32], 0, salt);
        await w.Owner.CommitRegistrationAsync(commitment);
        heard.Clear();
        var reveal = await w.Owner.RegisterModelAsync(second, Weights, null, 0, 10, 0, progress: heard.Add);
        Assert.Contains(reveal.Events, e => e.Name == "ModelRegistered");
        Assert.Contains(heard, h => h.Contains("found this account's commitment", StringComparison.Ordinal));
        Assert.DoesNotContain(heard, h => h.Contains("committed to registering", StringComparison.Ordinal));

        // The run after a reveal that landed while its receipt was lost (a time-out, a crash): it finds the registration and
        // answers with it, sending nothing. Another account, or other weights, is refused before any commitment.
        heard.Clear();
        var again = await w.Owner.RegisterModelAsync(second, Weights, null, 0, 10, 0, progress: heard.Add);
        Assert.Equal(reveal.TransactionHash, again.TransactionHash);
        Assert.Contains(heard, h => h.Contains("already registered by this account", StringComparison.Ordinal));
        var other = await w.NewAccountAsync("registration-latecomer");
        Assert.Equal("ModelExists", await RevertOf(() => other.RegisterModelAsync(second, Weights, null, 0, 10, 0)));
        Assert.Equal("ModelExists", await RevertOf(() => w.Owner.RegisterModelAsync(second, World.Digest("other weights"), null, 0, 10, 0)));

        // A commitment left for more than a day has expired: the next run commits again (the contract allows it then).
        var third = "acme/third";
        var salt3 = w.Owner.RegistrationSalt(third, Convert.FromHexString(Weights[2..]), new byte[32], 0);
        await w.Owner.CommitRegistrationAsync(await w.Owner.RegistrationCommitmentAsync(w.Owner.Address, third, Convert.FromHexString(Weights[2..]), new byte[32], 0, salt3));
        await fx.Node.IncreaseTimeAsync(24 * 3600 + 5);
        heard.Clear();
        await w.Owner.RegisterModelAsync(third, Weights, null, 0, 10, 0, progress: heard.Add);
        Assert.Contains(heard, h => h.Contains("committed to registering", StringComparison.Ordinal));
        Assert.Equal(w.Owner.Address, (await w.Owner.ModelOwnerAsync(third)).ToLowerInvariant());
    }
}
