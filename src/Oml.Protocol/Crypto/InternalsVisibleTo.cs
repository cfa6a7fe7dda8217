using System.Runtime.CompilerServices;

// The crypto tests check the field and curve arithmetic (FieldElement, Secp256k1Curve, Rfc6979) directly.
[assembly: InternalsVisibleTo("Oml.Protocol.Tests")]
