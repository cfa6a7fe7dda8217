using System.Numerics;
using Nethereum.ABI.FunctionEncoding;
using Nethereum.ABI.Model;
using Nethereum.Contracts;
using Nethereum.Util;

namespace Oml.Protocol.Chain;

/// <summary>
/// A transaction the chain refused: <see cref="ErrorName"/> is the contract's named custom error (e.g.
/// <c>NothingToWithdraw</c>) with its decoded arguments, or "Reverted" when the node gave no revert data.
/// Nothing was applied. When the refusal was found by simulation (before sending), no nonce was used either.
/// </summary>
public sealed class ChainRevertException(string errorName, IReadOnlyList<object?> arguments, string? data, string message)
    : Exception(message)
{
    public string ErrorName { get; } = errorName;
    public IReadOnlyList<object?> Arguments { get; } = arguments;
    public string? RevertData { get; } = data;
}

/// <summary>Decodes revert data into the custom errors of the protocol's contracts (and OpenZeppelin's).</summary>
public static class ChainErrors
{
    private static readonly Lazy<Dictionary<string, ErrorABI>> BySelector = new(() =>
    {
        var map = new Dictionary<string, ErrorABI>(StringComparer.OrdinalIgnoreCase);
        foreach (var name in ContractArtifact.Names)
        {
            var abi = new ContractBuilder(ContractArtifact.Load(name).Abi, "0x0000000000000000000000000000000000000000").ContractABI;
            foreach (var e in abi.Errors) map.TryAdd(e.Sha3Signature, e);
        }
        return map;
    });

    public static ChainRevertException Decode(string? data, string context)
    {
        if (string.IsNullOrEmpty(data) || data.Length < 10)
            return new ChainRevertException("Reverted", [], data, $"{context}: reverted without a reason");
        var hex = data.StartsWith("0x", StringComparison.Ordinal) ? data[2..] : data;
        var selector = hex[..8];
        if (selector.Equals("08c379a0", StringComparison.OrdinalIgnoreCase))
        {
            var reason = new FunctionCallDecoder().DecodeFunctionErrorMessage("0x" + hex);
            return new ChainRevertException("Error", [reason], data, $"{context}: {reason}");
        }
        if (!BySelector.Value.TryGetValue(selector, out var error))
            return new ChainRevertException("Unknown", [], data, $"{context}: reverted with unknown error 0x{selector}");
        var args = new ParameterDecoder().DecodeDefaultData(hex[8..], error.InputParameters)
            .Select(p => p.Result).ToList();
        var rendered = string.Join(", ", args.Select(Render));
        return new ChainRevertException(error.Name, args, data, $"{context}: {error.Name}({rendered})");
    }

    private static string Render(object? v) => v switch
    {
        byte[] b => "0x" + Convert.ToHexStringLower(b),
        BigInteger i => i.ToString(),
        null => "null",
        _ => v.ToString() ?? "",
    };
}
