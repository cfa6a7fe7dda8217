namespace Oml.Protocol.Tests;

public class ProjectTests
{
    [Fact]
    public void LedgerInterfaceIsPublic() => Assert.True(typeof(Oml.Protocol.Ledger.ILedger).IsPublic);
}
