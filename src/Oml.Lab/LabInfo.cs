namespace Oml.Lab;

/// <summary>The lab's version of its experiment and report formats.</summary>
public static class LabInfo
{
    public const int ConfigFormatVersion = 1;
}
