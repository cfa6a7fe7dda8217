using System.CommandLine;
using Oml.Cli;

var root = new RootCommand("oml: fingerprint open-weight language models and prove ownership of their copies.")
{
    InfoCommand.Create(),
    DemoCommand.Create(),
    ModelCommands.Tokenize(),
    ModelCommands.Generate(),
    ModelCommands.Score(),
};
return Cli.Run(root, args);
