return Oml.Cli.Cli.Run(Oml.Cli.Cli.CreateRoot(), args);
