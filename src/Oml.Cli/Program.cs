using System.CommandLine;
using Oml.Cli;

var root = new RootCommand("oml: fingerprint open-weight language models and prove ownership of their copies.")
{
    InfoCommand.Create(),
    DemoCommand.Create(),
};
return Cli.Run(root, args);
