namespace Oml.Lab.Tests;

public class LabInfoTests
{
    [Fact]
    public void ConfigFormatVersionIsOne() => Assert.Equal(1, LabInfo.ConfigFormatVersion);
}
