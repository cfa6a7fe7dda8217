// SPDX-License-Identifier: MIT
pragma solidity ^0.8.30;

/// @title OmlMerkle: the SHA-256 Merkle tree of src/Oml.Fingerprinting/MerkleTree.cs and the fingerprint leaf of
///        FingerprintLeaf.Encode, checked on chain.
/// @notice leaf = SHA-256(0x00 ‖ data), node = SHA-256(0x01 ‖ left ‖ right); on a level with an odd number of nodes
///         the last is promoted unchanged. A proof's shape (which steps exist, left or right) follows from the leaf
///         index and the leaf count, so a proof cannot be moved to another position. SHA-256 is the precompile.
library OmlMerkle {
    bytes internal constant LEAF_DOMAIN = "oml/fingerprint-leaf/v1";

    function leafHash(bytes memory data) internal pure returns (bytes32) {
        return sha256(abi.encodePacked(bytes1(0x00), data));
    }

    function nodeHash(bytes32 left, bytes32 right) internal pure returns (bytes32) {
        return sha256(abi.encodePacked(bytes1(0x01), left, right));
    }

    /// @notice Whether `leaf` (a leaf hash) is leaf `index` of the `count`-leaf tree with `root`.
    function verify(bytes32 root, uint256 count, uint256 index, bytes32 leaf, bytes32[] calldata proof)
        internal pure returns (bool) {
        if (index >= count) return false;
        bytes32 h = leaf;
        uint256 k = 0;
        uint256 i = index;
        uint256 n = count;
        while (n > 1) {
            uint256 sibling = i ^ 1;
            if (sibling < n) {
                if (k >= proof.length) return false;
                h = sibling < i ? nodeHash(proof[k], h) : nodeHash(h, proof[k]);
                k++;
            }
            i >>= 1;
            n = (n + 1) >> 1;
        }
        return k == proof.length && h == root;
    }

    /// @notice Parses a canonical fingerprint leaf ("oml/fingerprint-leaf/v1" ‖ u32 index ‖ salt[32] ‖ key text ‖ key
    ///         token ids ‖ u32 response count ‖ (text ‖ token ids)*; u32 big-endian, texts length-prefixed UTF-8) and
    ///         checks it against `answer` as ResponseMatcher.IsTextMatchAny does: after trimming leading whitespace from
    ///         both, the answer starts with one of the responses (an empty response never matches).
    /// @return ok the leaf is well formed, its index is `expectedIndex`, and it has at least one response
    /// @return fingerprintId keccak256(salt ‖ key), the id under which the fingerprint is spent
    /// @return queryHash keccak256(key), the receipt's query hash
    /// @return matched whether the answer matches a response
    function parseLeaf(bytes calldata leaf, uint256 expectedIndex, bytes calldata answer)
        internal pure returns (bool ok, bytes32 fingerprintId, bytes32 queryHash, bool matched) {
        uint256 d = LEAF_DOMAIN.length;
        if (leaf.length < d + 4 + 32 + 4) return (false, 0, 0, false);
        if (keccak256(leaf[0:d]) != keccak256(LEAF_DOMAIN)) return (false, 0, 0, false);
        uint256 p = d;
        if (_u32(leaf, p) != expectedIndex) return (false, 0, 0, false);
        p += 4;
        bytes calldata salt = leaf[p:p + 32];
        p += 32;
        uint256 keyLen = _u32(leaf, p);
        p += 4;
        if (p + keyLen > leaf.length) return (false, 0, 0, false);
        bytes calldata key = leaf[p:p + keyLen];
        p += keyLen;
        bool fine;
        (fine, p) = _skipInts(leaf, p);
        if (!fine || p + 4 > leaf.length) return (false, 0, 0, false);
        uint256 responses = _u32(leaf, p);
        p += 4;
        if (responses == 0) return (false, 0, 0, false);
        bytes calldata a = answer[_trimStart(answer):];
        for (uint256 r = 0; r < responses; r++) {
            if (p + 4 > leaf.length) return (false, 0, 0, false);
            uint256 len = _u32(leaf, p);
            p += 4;
            if (p + len > leaf.length) return (false, 0, 0, false);
            bytes calldata text = leaf[p:p + len];
            p += len;
            if (!matched) {
                bytes calldata e = text[_trimStart(text):];
                matched = e.length > 0 && a.length >= e.length && keccak256(a[0:e.length]) == keccak256(e);
            }
            (fine, p) = _skipInts(leaf, p);
            if (!fine) return (false, 0, 0, false);
        }
        if (p != leaf.length) return (false, 0, 0, false);
        return (true, keccak256(abi.encodePacked(salt, key)), keccak256(key), matched);
    }

    function _u32(bytes calldata b, uint256 p) private pure returns (uint256) {
        return uint256(uint32(bytes4(b[p:p + 4])));
    }

    function _skipInts(bytes calldata b, uint256 p) private pure returns (bool, uint256) {
        if (p + 4 > b.length) return (false, p);
        uint256 n = _u32(b, p);
        p += 4 + 4 * n;
        return (p <= b.length, p);
    }

    /// @dev The byte offset after the leading whitespace of UTF-8 text, as .NET's char.IsWhiteSpace defines it
    ///      (U+0009–U+000D, U+0020, U+0085, U+00A0, U+1680, U+2000–U+200A, U+2028, U+2029, U+202F, U+205F, U+3000).
    function _trimStart(bytes calldata s) private pure returns (uint256 i) {
        while (i < s.length) {
            uint8 c = uint8(s[i]);
            if (c == 0x20 || (c >= 0x09 && c <= 0x0D)) { i += 1; continue; }
            if (c == 0xC2 && i + 1 < s.length && (uint8(s[i + 1]) == 0x85 || uint8(s[i + 1]) == 0xA0)) { i += 2; continue; }
            if (i + 2 < s.length) {
                uint8 c1 = uint8(s[i + 1]);
                uint8 c2 = uint8(s[i + 2]);
                bool ws = (c == 0xE1 && c1 == 0x9A && c2 == 0x80)
                    || (c == 0xE2 && c1 == 0x80 && (c2 <= 0x8A || c2 == 0xA8 || c2 == 0xA9 || c2 == 0xAF) && c2 >= 0x80)
                    || (c == 0xE2 && c1 == 0x81 && c2 == 0x9F)
                    || (c == 0xE3 && c1 == 0x80 && c2 == 0x80);
                if (ws) { i += 3; continue; }
            }
            break;
        }
    }
}
