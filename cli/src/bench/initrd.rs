//! The benchmark's initramfs: scripts/fetch-guest.sh's busybox initramfs with a second cpio
//! archive appended that adds /bench/<workload>. The kernel unpacks concatenated archives one
//! after the other, each compressed or not on its own (Documentation/driver-api/
//! early-userspace/buffer-format.rst), as long as each starts on a 4-byte boundary (zero bytes
//! between them are skipped), so the base archive is used unchanged and nothing needs root.

use std::path::Path;

/// A file for the archive: its path inside the guest (no leading '/') and its contents.
pub struct Entry<'a> {
    pub path: &'a str,
    pub data: &'a [u8],
    /// Permission bits (e.g. 0o755).
    pub perm: u32,
}

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;

fn pad4(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

/// One "newc" header and name (cpio(5): "New ASCII Format"): 13 eight-digit hex fields.
fn header(out: &mut Vec<u8>, ino: u32, mode: u32, nlink: u32, size: usize, name: &str) {
    let fields = [
        ino,
        mode,
        0, // uid
        0, // gid
        nlink,
        0, // mtime
        size as u32,
        0,                     // devmajor
        0,                     // devminor
        0,                     // rdevmajor
        0,                     // rdevminor
        name.len() as u32 + 1, // namesize, with the NUL
        0,                     // check
    ];
    out.extend_from_slice(b"070701");
    for f in fields {
        out.extend_from_slice(format!("{f:08x}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad4(out);
}

/// An uncompressed newc archive: `dirs` (created first, 0755), then `files`, then the trailer.
pub fn cpio(dirs: &[&str], files: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut ino = 0x4000_0000u32; // far from the base archive's (only hard links compare them)
    for d in dirs {
        header(&mut out, ino, S_IFDIR | 0o755, 2, 0, d);
        ino += 1;
    }
    for f in files {
        header(
            &mut out,
            ino,
            S_IFREG | (f.perm & 0o7777),
            1,
            f.data.len(),
            f.path,
        );
        out.extend_from_slice(f.data);
        pad4(&mut out);
        ino += 1;
    }
    header(&mut out, 0, 0, 1, 0, "TRAILER!!!");
    out
}

/// Write `base` followed by `extra` (zero-padded to a 4-byte boundary between them) to `out`.
pub fn concat(base: &Path, extra: &[u8], out: &Path) -> std::io::Result<()> {
    let mut data = std::fs::read(base)?;
    pad4(&mut data);
    data.extend_from_slice(extra);
    std::fs::write(out, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parse a newc archive back: (name, mode, data) per entry, up to the trailer.
    fn parse(mut a: &[u8]) -> Vec<(String, u32, Vec<u8>)> {
        let mut v = Vec::new();
        let mut off = 0usize;
        loop {
            assert_eq!(&a[..6], b"070701", "magic at offset {off}");
            let field = |i: usize| {
                u32::from_str_radix(std::str::from_utf8(&a[6 + 8 * i..14 + 8 * i]).unwrap(), 16)
                    .unwrap() as usize
            };
            let (mode, size, namesize) = (field(1), field(6), field(11));
            let name = std::str::from_utf8(&a[110..110 + namesize - 1])
                .unwrap()
                .to_string();
            assert_eq!(a[110 + namesize - 1], 0);
            let data_at = (110 + namesize).next_multiple_of(4);
            let next = (data_at + size).next_multiple_of(4);
            if name == "TRAILER!!!" {
                assert_eq!(next, a.len(), "nothing after the trailer");
                return v;
            }
            v.push((name, mode as u32, a[data_at..data_at + size].to_vec()));
            off += next;
            a = &a[next..];
        }
    }

    #[test]
    fn newc_archive_round_trips() {
        let a = cpio(
            &["bench"],
            &[
                Entry {
                    path: "bench/a",
                    data: b"12345",
                    perm: 0o755,
                },
                Entry {
                    path: "bench/bb",
                    data: b"",
                    perm: 0o644,
                },
            ],
        );
        assert_eq!(a.len() % 4, 0);
        assert_eq!(
            parse(&a),
            vec![
                ("bench".to_string(), 0o040755, vec![]),
                ("bench/a".to_string(), 0o100755, b"12345".to_vec()),
                ("bench/bb".to_string(), 0o100644, vec![]),
            ]
        );
    }

    #[test]
    fn concatenation_aligns_the_second_archive() {
        let dir = std::env::temp_dir().join(format!("btvisor-cpio-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("base"), b"\x1f\x8b12345").unwrap();
        let extra = cpio(&[], &[]);
        concat(&dir.join("base"), &extra, &dir.join("out")).unwrap();
        let out = std::fs::read(dir.join("out")).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(&out[..7], b"\x1f\x8b12345");
        assert_eq!(&out[7..8], b"\0");
        assert_eq!(&out[8..], &extra[..]);
    }
}
