namespace Oml.Protocol.Core;

/// <summary>
/// How owner revenue flows up a model's family tree, the same on the embedded ledger and in OmlProtocol._split: each
/// declared parent gets its share (floor) of the amount, split again among its own parents; what remains goes to the
/// model's current owner. At most <see cref="MaxVisits"/> models are split (a zero part visits nothing); after that, a
/// parent not yet visited still gets its share, credited to its owner without being split further up (so a chain grown
/// above one parent cannot take a later sibling's consented share). A model's ancestry can grow
/// after its parent was declared (the parent's owner may declare parents of its own), so the bound is the split's own:
/// without it a parent's owner could grow a chain above it until every usage commit of the child ran out of gas.
/// </summary>
public static class FeeSplit
{
    /// <summary>OmlProtocol.MAX_SPLIT_VISITS.</summary>
    public const int MaxVisits = 64;

    /// <summary>Credits <paramref name="amount"/> of <paramref name="modelId"/>'s owner revenue along its family tree.</summary>
    internal static void Split(ProtocolState s, string modelId, long amount, Action<string, long> credit) => Visit(s, modelId, amount, credit, 0);

    private static int Visit(ProtocolState s, string modelId, long amount, Action<string, long> credit, int visited)
    {
        if (amount == 0) return visited;
        visited++;
        var model = s.ModelMap[modelId];
        long rest = amount;
        foreach (var p in model.ParentList)
        {
            long part = Rules.Fraction(amount, p.ShareBps);
            rest -= part;
            if (visited < MaxVisits) visited = Visit(s, p.ParentModelId, part, credit, visited);
            else if (part > 0) credit(s.ModelMap[p.ParentModelId].Owner, part);   // its share, not split further up
        }
        credit(model.Owner, rest);
        return visited;
    }
}
