using System.Numerics;
using Nethereum.ABI.FunctionEncoding.Attributes;
using Oml.Protocol.Access;
using Oml.Protocol.Core;
using Oml.Protocol.Crypto;

namespace Oml.Protocol.Chain;

/// <summary>Why a host must not serve a permit (decision 2 of the protocol: check before serving); Ok to serve.</summary>
public enum PermitRefusal
{
    Ok, BadSignature, WrongHost, UnknownModel, FeeTooLow, ExpiresTooSoon,
    /// <summary>The user's nonce was settled with this host for this model already.</summary>
    NonceUsed,
    Underfunded, RefundPending,
    /// <summary>This host announced its exit from the licence: it takes no new permits.</summary>
    HostExiting,
}

/// <summary>OmlProtocol.Model as returned by <c>model(bytes32)</c>.</summary>
[FunctionOutput]
public sealed class ModelView : IFunctionOutputDTO
{
    [Parameter("address", "owner", 1)] public string Owner { get; set; } = "";
    [Parameter("address", "pendingOwner", 2)] public string PendingOwner { get; set; } = "";
    [Parameter("uint256", "price", 3)] public BigInteger Price { get; set; }
    [Parameter("uint256", "minCollateral", 4)] public BigInteger MinCollateral { get; set; }
    [Parameter("uint32", "versions", 5)] public uint Versions { get; set; }
    [Parameter("uint32", "licences", 6)] public uint Licences { get; set; }
    [Parameter("uint16", "parentShareBps", 7)] public ushort ParentShareBps { get; set; }
    [Parameter("bool", "exists", 8)] public bool Exists { get; set; }
}

public static class PermitChecks
{
    /// <summary>
    /// What a host checks against the chain before it serves a permit, so that the permit will certainly settle:
    /// the user's signature for this deployment, host = this client's account, the model exists and fee ≥ its price,
    /// expiry ≥ <paramref name="settleBy"/> (the end of the epoch in which the host will commit), the user's nonce
    /// never settled with this host for this model (the contract's replay guard), escrow[user][host] ≥ fee + <paramref name="outstanding"/> (the user's permits this host accepted and has
    /// not settled yet), and no refund request pending. The host must also remember the nonces it accepted
    /// (persisted) to refuse a replay before settlement; that memory is the host's, not the chain's.
    /// </summary>
    public static async Task<PermitRefusal> CheckPermitAsync(this OmlChainClient host, SignedPermit permit, BigInteger outstanding, long settleBy)
    {
        var p = permit.Permit;
        if (!permit.Verify(host.Domain)) return PermitRefusal.BadSignature;
        if (!string.Equals(p.Host, host.Address, StringComparison.OrdinalIgnoreCase)) return PermitRefusal.WrongHost;
        var model = await host.Protocol.GetFunction("model").CallDeserializingToObjectAsync<ModelView>(OmlChainClient.ModelKey(p.ModelId)).ConfigureAwait(false);
        if (!model.Exists) return PermitRefusal.UnknownModel;
        if (p.Fee < model.Price) return PermitRefusal.FeeTooLow;
        if ((await host.ExitOfAsync(p.ModelId, host.Address).ConfigureAwait(false)).Announced) return PermitRefusal.HostExiting;
        if (p.Expiry < settleBy) return PermitRefusal.ExpiresTooSoon;
        if (await host.Protocol.GetFunction("permitNonceUsed").CallAsync<bool>(p.User, host.Address, OmlChainClient.ModelKey(p.ModelId), new BigInteger(p.Nonce)).ConfigureAwait(false))
            return PermitRefusal.NonceUsed;
        if (await host.Protocol.GetFunction("refundRequestedAt").CallAsync<BigInteger>(p.User, host.Address).ConfigureAwait(false) != 0)
            return PermitRefusal.RefundPending;
        var escrow = await host.EscrowAsync(p.User, host.Address).ConfigureAwait(false);
        if (escrow < p.Fee + outstanding) return PermitRefusal.Underfunded;
        return PermitRefusal.Ok;
    }
}
