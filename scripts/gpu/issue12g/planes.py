#!/usr/bin/env python3
"""Moves a model folder through the device tool's 16 MiB-a-file, 64 MiB-a-call return path, and back in.

  planes.py pack MODEL_DIR OUT_DIR PIECE_MIB   one tar of the folder, split into its even and odd bytes (a bfloat16
                                               weight's low byte is mostly mantissa noise, its high byte sign and
                                               exponent, which compress well), each plane xz-compressed and cut into
                                               PIECE_MIB pieces; OUT_DIR/manifest.json names the pieces and digests
  planes.py unpack IN_DIR DEST_DIR             the reverse: joins the pieces, checks every digest, unpacks the folder
                                               into DEST_DIR (the tar's top folder keeps its name)
  planes.py repiece IN_DIR OUT_DIR PIECE_MIB   the same planes cut into other pieces (the way in carries less a call)
Standard library and the xz program only (the device machine has no numpy here, and lzma alone is single-threaded).
"""
import hashlib, json, os, subprocess, sys, tarfile


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def pack(model, out, piece_mib):
    os.makedirs(out, exist_ok=True)
    name = os.path.basename(os.path.normpath(model))
    tar = os.path.join(out, name + ".tar")
    with tarfile.open(tar, "w", format=tarfile.GNU_FORMAT) as t:
        t.add(model, arcname=name)   # recursive, each folder's entries in sorted order
    digest = sha256(tar)
    data = open(tar, "rb").read()
    os.remove(tar)
    manifest = {"name": name, "tar_bytes": len(data), "tar_sha256": digest, "planes": {}}
    for plane, part in (("lo", data[0::2]), ("hi", data[1::2])):
        raw = os.path.join(out, f"{name}.{plane}")
        with open(raw, "wb") as f:
            f.write(part)
        subprocess.run(["xz", "-T0", "-6", "-f", raw], check=True)
        xz = raw + ".xz"
        pieces, size, i = [], piece_mib << 20, 0
        with open(xz, "rb") as f:
            while chunk := f.read(size):
                p = f"{xz}.{i:02d}"
                with open(p, "wb") as g:
                    g.write(chunk)
                pieces.append({"file": os.path.basename(p), "bytes": len(chunk), "sha256": hashlib.sha256(chunk).hexdigest()})
                i += 1
        manifest["planes"][plane] = {"xz_bytes": os.path.getsize(xz), "pieces": pieces}
        os.remove(xz)
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    total = sum(p["bytes"] for pl in manifest["planes"].values() for p in pl["pieces"])
    print(f"{name}: tar {len(data) / 2**20:.1f} MiB -> {total / 2**20:.1f} MiB in "
          f"{sum(len(pl['pieces']) for pl in manifest['planes'].values())} pieces")


def joined(src, m, plane):
    buf = bytearray()
    for p in m["planes"][plane]["pieces"]:
        chunk = open(os.path.join(src, p["file"]), "rb").read()
        if hashlib.sha256(chunk).hexdigest() != p["sha256"]:
            sys.exit(f"planes.py: {p['file']} is damaged (digest mismatch)")
        buf += chunk
    return bytes(buf)


def repiece(src, out, piece_mib):
    m = json.load(open(os.path.join(src, "manifest.json")))
    os.makedirs(out, exist_ok=True)
    for plane in m["planes"]:
        data, size, pieces = joined(src, m, plane), piece_mib << 20, []
        for i in range(0, len(data), size):
            name = f"{m['name']}.{plane}.xz.{i // size:02d}"
            with open(os.path.join(out, name), "wb") as g:
                g.write(data[i:i + size])
            pieces.append({"file": name, "bytes": len(data[i:i + size]), "sha256": hashlib.sha256(data[i:i + size]).hexdigest()})
        m["planes"][plane]["pieces"] = pieces
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(m, f, indent=1)
    print(f"{m['name']}: {sum(len(pl['pieces']) for pl in m['planes'].values())} pieces of at most {piece_mib} MiB in {out}")


def unpack(src, dest):
    m = json.load(open(os.path.join(src, "manifest.json")))
    planes = {plane: subprocess.run(["xz", "-dc"], input=joined(src, m, plane), capture_output=True, check=True).stdout
              for plane in m["planes"]}
    data = bytearray(m["tar_bytes"])
    data[0::2] = planes["lo"]
    data[1::2] = planes["hi"]
    if hashlib.sha256(data).hexdigest() != m["tar_sha256"]:
        sys.exit("planes.py: the joined tar's digest does not match the manifest")
    os.makedirs(dest, exist_ok=True)
    tar = os.path.join(dest, m["name"] + ".tar.tmp")
    with open(tar, "wb") as f:
        f.write(data)
    with tarfile.open(tar) as t:
        t.extractall(dest, filter="data")
    os.remove(tar)
    print(f"{m['name']}: unpacked into {os.path.join(dest, m['name'])} (tar sha256 {m['tar_sha256'][:16]}...)")


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "pack":
        pack(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif len(sys.argv) == 4 and sys.argv[1] == "unpack":
        unpack(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 5 and sys.argv[1] == "repiece":
        repiece(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        sys.exit(__doc__)
