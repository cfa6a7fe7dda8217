using System.Numerics;
using Nethereum.Hex.HexTypes;
using Nethereum.JsonRpc.Client;
using Nethereum.RPC.Eth.DTOs;
using Nethereum.Web3;
using Nethereum.Web3.Accounts;
using Oml.Protocol.Crypto;

namespace Oml.Protocol.Chain;

/// <summary>A transaction signed and sent (or about to be): its hash identifies it whatever happens to the node.</summary>
public sealed record SentTransaction(string Hash, string RawTransaction, BigInteger Nonce, string? To, string Description, string? Data = null);

/// <summary>
/// One account's transactions: simulates each call first (a refusal becomes a <see cref="ChainRevertException"/>
/// naming the contract's custom error, and uses no nonce), assigns nonces locally (never below the node's pending
/// count), signs, sends the raw transaction and waits for its receipt. Submission is idempotent: a transaction is
/// identified by its hash, so re-sending the same raw transaction after a timeout or a node restart either finds its
/// receipt or lets the node apply it once — the nonce makes a second application impossible.
/// <see cref="SendAsync"/> goes further: a transaction whose receipt never came (a time-out, a lost node, a crashed
/// process when <see cref="JournalDirectory"/> is set) stays on record, and the account's next call first re-submits
/// it; when that next call is the same call (same target and data) it is taken as a retry, answered with the first
/// transaction's receipt and not sent again. A recorded transaction whose nonce another transaction has taken since
/// (the node lost it, and went on) was never applied and is dropped.
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

    /// <summary>
    /// Where this account's transactions are recorded between signing and their receipt (one JSON file each, named by
    /// nonce and hash, under a folder per address), so that a later process resumes them; null: in memory only.
    /// </summary>
    public string? JournalDirectory { get; set; }

    private readonly List<SentTransaction> _unconfirmed = [];
    private bool _journalRead;

    private string? JournalFolder => JournalDirectory is null ? null : Path.Combine(JournalDirectory, AddressHex.ToLowerInvariant());

    private string? JournalFile(SentTransaction tx) => JournalFolder is null ? null : Path.Combine(JournalFolder, $"{tx.Nonce:D12}-{tx.Hash}.json");

    private void Remember(SentTransaction tx)
    {
        _unconfirmed.Add(tx);
        if (JournalFile(tx) is not { } path) return;
        Directory.CreateDirectory(JournalFolder!);
        var tmp = path + ".tmp-" + Environment.ProcessId;
        using (var fs = new FileStream(tmp, FileMode.Create, FileAccess.Write, FileShare.None))
        {
            System.Text.Json.JsonSerializer.Serialize(fs, new JournalEntry(tx.Hash, tx.RawTransaction, tx.Nonce.ToString(), tx.To, tx.Description, tx.Data));
            fs.Flush(flushToDisk: true);
        }
        File.Move(tmp, path, overwrite: true);
    }

    private void Forget(SentTransaction tx)
    {
        _unconfirmed.Remove(tx);
        if (JournalFile(tx) is { } path && File.Exists(path)) File.Delete(path);
    }

    private sealed record JournalEntry(string Hash, string Raw, string Nonce, string? To, string Description, string? Data);

    /// <summary>Transactions signed and sent whose receipts were never seen (from this process and the journal), oldest first.</summary>
    public IReadOnlyList<SentTransaction> Unconfirmed
    {
        get
        {
            if (!_journalRead && JournalFolder is { } folder && Directory.Exists(folder))
            {
                foreach (var f in Directory.GetFiles(folder, "*.json").Order(StringComparer.Ordinal))
                {
                    var e = System.Text.Json.JsonSerializer.Deserialize<JournalEntry>(File.ReadAllText(f))
                        ?? throw new InvalidDataException($"{f}: empty journal entry");
                    if (_unconfirmed.All(u => u.Hash != e.Hash))
                        _unconfirmed.Add(new SentTransaction(e.Hash, e.Raw, BigInteger.Parse(e.Nonce), e.To, e.Description, e.Data));
                }
                _journalRead = true;
            }
            return [.. _unconfirmed.OrderBy(u => u.Nonce)];
        }
    }

    /// <summary>
    /// Simulates, signs and sends a call (to = null: a deployment), and waits for its receipt. Earlier transactions of
    /// this account that never got a receipt are settled first; if one of them is this very call, its receipt is
    /// returned and nothing new is sent.
    /// </summary>
    public async Task<TransactionReceipt> SendAsync(string? to, string data, string description, CancellationToken ct = default)
    {
        foreach (var old in Unconfirmed)
        {
            bool same = old.To == to && old.Data == data;
            TransactionReceipt receipt;
            try
            {
                if (await SupersededAsync(old).ConfigureAwait(false))
                {
                    Forget(old);   // its nonce went to another transaction: it was never applied
                    continue;
                }
                receipt = await SubmitAsync(old, ct).ConfigureAwait(false);
            }
            catch (ChainRevertException) when (!same)
            {
                Forget(old);   // an earlier action that failed on chain: its caller saw the time-out; nothing to apply
                continue;
            }
            catch (ChainRevertException)
            {
                Forget(old);
                throw;
            }
            Forget(old);
            if (same) return receipt;
        }
        var tx = await PrepareAsync(to, data, description, ct).ConfigureAwait(false);
        Remember(tx);
        TransactionReceipt r;
        try
        {
            r = await SubmitAsync(tx, ct).ConfigureAwait(false);
        }
        catch (ChainRevertException)
        {
            Forget(tx);   // mined and reverted: settled, nothing to resume
            throw;
        }
        Forget(tx);
        return r;
    }

    /// <summary>Whether <paramref name="tx"/> has no receipt and its nonce was used by a mined transaction (so it never will).</summary>
    private async Task<bool> SupersededAsync(SentTransaction tx)
    {
        if (await Web3.Eth.Transactions.GetTransactionReceipt.SendRequestAsync(tx.Hash).ConfigureAwait(false) is not null) return false;
        var mined = (await Web3.Eth.Transactions.GetTransactionCount.SendRequestAsync(AddressHex, BlockParameter.CreateLatest()).ConfigureAwait(false)).Value;
        if (mined <= tx.Nonce) return false;
        // the nonce is used; a receipt for our hash may still be missing only because the node dropped it
        return await Web3.Eth.Transactions.GetTransactionReceipt.SendRequestAsync(tx.Hash).ConfigureAwait(false) is null;
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
            return new SentTransaction(hash, rawHex, nonce, to, description, data);
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
