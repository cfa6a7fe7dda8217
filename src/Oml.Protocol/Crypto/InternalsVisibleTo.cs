using System.Runtime.CompilerServices;

// The tests reach internals: the secp256k1 group order helpers, the usage store's crash-test step hook.
[assembly: InternalsVisibleTo("Oml.Protocol.Tests")]
