using System.Numerics;
using Nethereum.Hex.HexTypes;
using Nethereum.JsonRpc.Client;
using Nethereum.RPC.Eth.DTOs;
using Nethereum.Web3;
using Nethereum.Web3.Accounts;
using Oml.Protocol.Crypto;

namespace Oml.Protocol.Chain;

/// <summary>A transaction signed and sent (or about to be): its hash identifies it whatever happens to the node.</summary>
public sealed record SentTransaction(string Hash, string RawTransaction, BigInteger Nonce, string? To, string Description);

/// <summary>
/// One account's transactions: simulates each call first (a refusal becomes a <see cref="ChainRevertException"/>
/// naming the contract's custom error, and uses no nonce), assigns nonces locally (never below the node's pending
/// count), signs, sends the raw transaction and waits for its receipt. Submission is idempotent: a transaction is
/// identified by its hash, so re-sending the same raw transaction after a timeout or a node restart either finds its
/// receipt or lets the node apply it once — the nonce makes a second application impossible.
/// </summary>
public sealed class ChainSender
{
    private readonly SemaphoreSlim _lock = new(1, 1);
    private BigInteger? _nextNonce;

    public ChainSender(string rpcUrl, string privateKeyHex, long chainId)
    {
        Account = new Account(privateKeyHex, chainId);
        Web3 = new Web3(Account, rpcUrl);
        ChainId = chainId;
        using var key = PrivateKey.FromHex(privateKeyHex);
        Address = key.Address;
    }

    public Web3 Web3 { get; }
    public Account Account { get; }
    public long ChainId { get; }
    public Address Address { get; }
    public string AddressHex => Address.ToString();

    /// <summary>How long to wait for a receipt before giving up (the transaction may still be mined later).</summary>
    public TimeSpan ReceiptTimeout { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>Simulates, signs and sends a call (to = null: a deployment), and waits for its receipt.</summary>
    public async Task<TransactionReceipt> SendAsync(string? to, string data, string description, CancellationToken ct = default)
    {
        var tx = await PrepareAsync(to, data, description, ct).ConfigureAwait(false);
        return await SubmitAsync(tx, ct).ConfigureAwait(false);
    }

    /// <summary>Simulates the call (throws <see cref="ChainRevertException"/> if the chain would refuse it) and signs it
    /// with the next nonce. The nonce is taken: submit the result (again and again if need be) with
    /// <see cref="SubmitAsync"/>.</summary>
    public async Task<SentTransaction> PrepareAsync(string? to, string data, string description, CancellationToken ct = default)
    {
        await _lock.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            var call = new CallInput { From = AddressHex, To = to, Data = data };
            HexBigInteger gas;
            try
            {
                gas = await Web3.Eth.Transactions.EstimateGas.SendRequestAsync(call).ConfigureAwait(false);
            }
            catch (RpcResponseException e)
            {
                throw ChainErrors.Decode(e.RpcError?.Data?.ToString(), description);
            }
            var pending = (await Web3.Eth.Transactions.GetTransactionCount.SendRequestAsync(AddressHex, BlockParameter.CreatePending())
                .ConfigureAwait(false)).Value;
            var nonce = _nextNonce is BigInteger n && n > pending ? n : pending;
            var gasPrice = (await Web3.Eth.GasPrice.SendRequestAsync().ConfigureAwait(false)).Value;
            var input = new TransactionInput
            {
                From = AddressHex,
                To = to,
                Data = data,
                Gas = new HexBigInteger(gas.Value * 6 / 5 + 10_000),
                GasPrice = new HexBigInteger(gasPrice),
                Nonce = new HexBigInteger(nonce),
                Value = new HexBigInteger(0),
                ChainId = new HexBigInteger(ChainId),
            };
            var raw = await Account.TransactionManager.SignTransactionAsync(input).ConfigureAwait(false);
            var rawHex = raw.StartsWith("0x", StringComparison.Ordinal) ? raw : "0x" + raw;
            var hash = "0x" + Convert.ToHexStringLower(Keccak256.Hash(Convert.FromHexString(rawHex[2..])));
            _nextNonce = nonce + 1;
            return new SentTransaction(hash, rawHex, nonce, to, description);
        }
        finally
        {
            _lock.Release();
        }
    }

    /// <summary>
    /// Sends a signed transaction (again, if it was sent before) and waits for its receipt. If the node already knows
    /// it or already mined it, nothing is applied twice: the receipt by hash is returned. A receipt with status 0 is
    /// a <see cref="ChainRevertException"/>.
    /// </summary>
    public async Task<TransactionReceipt> SubmitAsync(SentTransaction tx, CancellationToken ct = default)
    {
        var receipt = await Web3.Eth.Transactions.GetTransactionReceipt.SendRequestAsync(tx.Hash).ConfigureAwait(false);
        if (receipt is null)
        {
            try
            {
                var hash = await Web3.Eth.Transactions.SendRawTransaction.SendRequestAsync(tx.RawTransaction).ConfigureAwait(false);
                if (!string.Equals(hash, tx.Hash, StringComparison.OrdinalIgnoreCase))
                    throw new InvalidOperationException($"{tx.Description}: the node reports hash {hash}, expected {tx.Hash}");
            }
            catch (RpcResponseException e) when (IsKnown(e.RpcError?.Message))
            {
                // Already in the pool or already mined (nonce used): wait for the receipt of this very hash below.
            }
            receipt = await WaitReceiptAsync(tx, ct).ConfigureAwait(false);
        }
        if (receipt.Status?.Value != 1)
            throw new ChainRevertException("Reverted", [], null, $"{tx.Description}: transaction {tx.Hash} reverted");
        return receipt;
    }

    private static bool IsKnown(string? message) => message is not null &&
        (message.Contains("already known", StringComparison.OrdinalIgnoreCase)
         || message.Contains("nonce too low", StringComparison.OrdinalIgnoreCase)
         || message.Contains("already imported", StringComparison.OrdinalIgnoreCase));

    private async Task<TransactionReceipt> WaitReceiptAsync(SentTransaction tx, CancellationToken ct)
    {
        var until = DateTime.UtcNow + ReceiptTimeout;
        int delay = 5;
        while (true)
        {
            var r = await Web3.Eth.Transactions.GetTransactionReceipt.SendRequestAsync(tx.Hash).ConfigureAwait(false);
            if (r is not null) return r;
            if (DateTime.UtcNow > until)
                throw new TimeoutException($"{tx.Description}: no receipt for {tx.Hash} after {ReceiptTimeout.TotalSeconds:0} s; submit it again to resume");
            await Task.Delay(delay, ct).ConfigureAwait(false);
            delay = Math.Min(delay * 2, 250);
        }
    }

    /// <summary>Forgets the local nonce, so the next transaction takes the node's pending count (after a node
    /// restart from an older state, say).</summary>
    public void ResetNonce() => _nextNonce = null;
}
