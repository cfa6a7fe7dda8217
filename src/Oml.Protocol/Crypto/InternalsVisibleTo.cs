using System.Runtime.CompilerServices;

// The tests reach internals: the secp256k1 group order helpers, the usage store's crash-test step hook.
[assembly: InternalsVisibleTo("Oml.Protocol.Tests")]
// The chain backend rebuilds a ProtocolState from contract events (ChainProjector), through its internal setters.
[assembly: InternalsVisibleTo("Oml.Protocol.Chain")]
