//! A signed zone's keys: ECDSA P-256 with SHA-256 (algorithm 13). Kept as
//! BIND `K<zone>+013+<tag>.key` / `.private` files, so keys made by
//! `dnssec-keygen` can be dropped in and ours read by BIND's tools: every
//! key of the zone in the directory is loaded with its timing metadata
//! (see [`crate::rollover`]); one combined signing key (flags 257) is
//! generated on first start when there is none.
//!
//! Invariant: every DNSKEY we publish is the public half of a key pair we
//! hold (ring checks each pair when it is loaded).

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
};

use crate::rollover::{KeyState, KeyTiming};
use hickory_proto::dnssec::{
    Algorithm, DigestType, PublicKeyBuf,
    rdata::{CDNSKEY, CDS, DNSKEY, DS},
};
use hickory_server::proto::rr::Name;
use ring::{
    rand::SystemRandom,
    signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair},
};

/// DNSKEY flags: Zone Key and Secure Entry Point (a KSK, or a CSK).
pub(crate) const CSK_FLAGS: u16 = 257;
/// DNSKEY flags: Zone Key only (a ZSK).
pub(crate) const ZSK_FLAGS: u16 = 256;
/// ECDSAP256SHA256.
const ALGORITHM: u8 = 13;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    #[error("DNSSEC key {path}: {reason}")]
    File { path: String, reason: String },
    #[error(
        "DNSSEC zone {zone}: no key in {dir} is active now (check the Activate and Inactive \
         times of its K{zone}+013+*.private files)"
    )]
    NoActiveKey { zone: String, dir: String },
    #[error(
        "DNSSEC zone {zone}: no key files in {dir}; steerd makes a key only on first start, \
         restore the K{zone}+013+* files"
    )]
    NoKeys { zone: String, dir: String },
}

fn bad(path: &Path, reason: impl Into<String>) -> KeyError {
    KeyError::File {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

/// One of a zone's keys, its timing and the records that publish it.
/// `origin`'s key files in `dir` (`K<origin>+013+<tag>.private` and
/// `.key`, any case); none when `dir` does not exist yet.
fn key_files(origin: &str, dir: &Path) -> Result<Vec<fs::DirEntry>, KeyError> {
    let prefix = format!("k{}+013+", origin.to_ascii_lowercase());
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(bad(dir, e.to_string())),
    };
    Ok(entries
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name().to_str().is_some_and(|n| {
                n.to_ascii_lowercase().starts_with(&prefix)
                    && (n.ends_with(".private") || n.ends_with(".key"))
            })
        })
        .collect())
}

/// A zone's key files as [`ZoneKey::fingerprint`] saw them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct KeyFiles(Vec<(String, u64, Option<std::time::SystemTime>)>);

pub(crate) struct ZoneKey {
    pub(crate) pair: EcdsaKeyPair,
    /// X || Y, as in the DNSKEY RDATA (RFC 6605 4).
    pub(crate) public: Vec<u8>,
    /// 257 (KSK or CSK) or 256 (ZSK).
    pub(crate) flags: u16,
    pub(crate) tag: u16,
    pub(crate) timing: KeyTiming,
    pub(crate) path: PathBuf,
}

impl ZoneKey {
    /// Every key for `origin` in `dir` (by file name), or a new combined
    /// signing key written there, active from `now`, when it has none.
    pub(crate) fn load_or_generate(
        origin: &str,
        dir: &Path,
        now: i64,
    ) -> Result<Vec<Self>, KeyError> {
        let keys = Self::load_all(origin, dir)?;
        if keys.is_empty() {
            return Ok(vec![Self::generate(origin, dir, now)?]);
        }
        Ok(keys)
    }

    /// Every key for `origin` in `dir`, by file name; one file that does
    /// not load fails them all (a half-read key set could drop the key
    /// that signs).
    pub(crate) fn load_all(origin: &str, dir: &Path) -> Result<Vec<Self>, KeyError> {
        let mut found: Vec<PathBuf> = key_files(origin, dir)?
            .into_iter()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "private"))
            .collect();
        found.sort();
        found.iter().map(|p| Self::load(p)).collect()
    }

    /// What [`Self::load_all`] would read for `origin` in `dir`, as each
    /// key file's name, length and modification time: unchanged, the keys
    /// are (the publisher looks every second; parsing the keys each time
    /// was wasted work).
    pub(crate) fn fingerprint(origin: &str, dir: &Path) -> Result<KeyFiles, KeyError> {
        let mut files = Vec::new();
        for entry in key_files(origin, dir)? {
            let meta = entry
                .metadata()
                .map_err(|e| bad(&entry.path(), e.to_string()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            files.push((name, meta.len(), meta.modified().ok()));
        }
        files.sort();
        Ok(KeyFiles(files))
    }

    /// Reads a BIND key pair (`.private` and the `.key` beside it).
    fn load(private_path: &Path) -> Result<Self, KeyError> {
        let text =
            fs::read_to_string(private_path).map_err(|e| bad(private_path, e.to_string()))?;
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_owned())
        };
        let algorithm = field("Algorithm:").unwrap_or_default();
        let mut timing = KeyTiming::parse(&text).map_err(|e| bad(private_path, e))?;
        if algorithm.split_whitespace().next() != Some("13") {
            return Err(bad(
                private_path,
                format!("algorithm {algorithm:?}: only 13 (ECDSAP256SHA256) is supported"),
            ));
        }
        let private = field("PrivateKey:")
            .and_then(|b| data_encoding::BASE64.decode(b.as_bytes()).ok())
            .ok_or_else(|| bad(private_path, "no valid PrivateKey line"))?;
        let key_path = private_path.with_extension("key");
        let key_text = fs::read_to_string(&key_path).map_err(|e| bad(&key_path, e.to_string()))?;
        // BIND keeps timing in both files; the .private one wins.
        let commented = KeyTiming::parse(&key_text).map_err(|e| bad(&key_path, e))?;
        timing.created = timing.created.or(commented.created);
        timing.publish = timing.publish.or(commented.publish);
        timing.activate = timing.activate.or(commented.activate);
        timing.inactive = timing.inactive.or(commented.inactive);
        timing.delete = timing.delete.or(commented.delete);
        let (flags, public) = key_text
            .lines()
            .filter(|l| !l.trim_start().starts_with(';'))
            .find_map(|l| {
                let mut words = l.split_whitespace().skip_while(|w| *w != "DNSKEY").skip(1);
                let flags: u16 = words.next()?.parse().ok()?;
                let (proto, alg) = (words.next()?, words.next()?);
                if ![CSK_FLAGS, ZSK_FLAGS].contains(&flags) || proto != "3" || alg != "13" {
                    return None;
                }
                let b64: String = words.collect();
                Some((flags, data_encoding::BASE64.decode(b64.as_bytes()).ok()?))
            })
            .ok_or_else(|| {
                bad(
                    &key_path,
                    "no `DNSKEY 257 3 13 <key>` (KSK or CSK) or `DNSKEY 256 3 13 <key>` (ZSK) line",
                )
            })?;
        let mut key = Self::from_parts(&private, &public, flags, private_path)?;
        key.timing = timing;
        Ok(key)
    }

    fn from_parts(
        private: &[u8],
        public: &[u8],
        flags: u16,
        path: &Path,
    ) -> Result<Self, KeyError> {
        let mut uncompressed = vec![4u8];
        uncompressed.extend_from_slice(public);
        let pair = EcdsaKeyPair::from_private_key_and_public_key(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            private,
            &uncompressed,
            &SystemRandom::new(),
        )
        .map_err(|e| bad(path, format!("not a P-256 key pair: {e}")))?;
        Ok(Self {
            pair,
            public: public.to_vec(),
            flags,
            tag: key_tag(&dnskey_rdata(flags, public)),
            timing: KeyTiming::default(),
            path: path.to_path_buf(),
        })
    }

    pub(crate) fn generate(origin: &str, dir: &Path, now: i64) -> Result<Self, KeyError> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|e| bad(dir, format!("cannot generate a key: {e}")))?;
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .map_err(|e| bad(dir, format!("cannot generate a key: {e}")))?;
        let private = pkcs8_private_scalar(pkcs8.as_ref())
            .ok_or_else(|| bad(dir, "cannot read the generated key"))?;
        let public = pair.public_key().as_ref().get(1..).unwrap_or_default();
        let tag = key_tag(&dnskey_rdata(CSK_FLAGS, public));
        fs::create_dir_all(dir).map_err(|e| bad(dir, e.to_string()))?;
        // Not `with_extension`: the zone's dots are in the file name.
        let key_path = dir.join(format!("K{origin}+013+{tag:05}.key"));
        let private_path = dir.join(format!("K{origin}+013+{tag:05}.private"));
        let b64 = |b: &[u8]| data_encoding::BASE64.encode(b);
        let timing = KeyTiming::from_now(now);
        let key_text = format!(
            "; This is a key-signing key, keyid {tag}, for {origin}\n\
             ; Generated by steerd (combined signing key)\n\
             {}{origin} IN DNSKEY {CSK_FLAGS} 3 {ALGORITHM} {}\n",
            timing.key_comments(),
            b64(public)
        );
        let private_text = format!(
            "Private-key-format: v1.3\nAlgorithm: 13 (ECDSAP256SHA256)\nPrivateKey: {}\n{}",
            b64(private),
            timing.private_lines()
        );
        write_private(&private_path, private_text.as_bytes())?;
        fs::write(&key_path, key_text).map_err(|e| bad(&key_path, e.to_string()))?;
        // Read back what was written: what serves is what is on disk.
        Self::load(&private_path)
    }

    /// Whether the key is a Secure Entry Point (KSK or CSK): the one the
    /// parent's DS names and that signs the DNSKEY RRset.
    pub(crate) fn is_sep(&self) -> bool {
        self.flags == CSK_FLAGS
    }

    pub(crate) fn state_at(&self, now: i64) -> KeyState {
        self.timing.state_at(now)
    }

    pub(crate) fn dnskey(&self) -> DNSKEY {
        DNSKEY::with_flags(
            self.flags,
            PublicKeyBuf::new(self.public.clone(), Algorithm::ECDSAP256SHA256),
        )
    }

    /// The DS for the parent (SHA-256 digest, RFC 4509 and RFC 4034
    /// 5.1.4), of our DNSKEY with its flags (hickory's `DS::from_key`
    /// assumes 256).
    pub(crate) fn ds(&self, origin: &Name) -> Option<DS> {
        let dnskey = self.dnskey();
        let digest = dnskey.to_digest(origin, DigestType::SHA256).ok()?;
        Some(DS::new(
            self.tag,
            Algorithm::ECDSAP256SHA256,
            DigestType::SHA256,
            digest.as_ref().to_vec(),
        ))
    }

    /// The DS in presentation form: `<zone> IN DS <tag> 13 2 <HEX>`.
    pub(crate) fn ds_line(&self, origin: &Name) -> Option<String> {
        let ds = self.ds(origin)?;
        Some(format!(
            "{} IN DS {} 13 2 {}",
            origin.to_lowercase(),
            self.tag,
            data_encoding::HEXUPPER.encode(ds.digest())
        ))
    }

    /// CDS and CDNSKEY (RFC 7344): what the parent should publish.
    pub(crate) fn child_records(&self, origin: &Name) -> Option<(CDS, CDNSKEY)> {
        let ds = self.ds(origin)?;
        let cds = CDS::new(
            ds.key_tag(),
            Some(ds.algorithm()),
            ds.digest_type(),
            ds.digest().to_vec(),
        );
        let cdnskey = CDNSKEY::with_flags(
            self.flags,
            Some(Algorithm::ECDSAP256SHA256),
            self.public.clone(),
        );
        Some((cds, cdnskey))
    }
}

/// Writes `dsset-<zone>` in `dir` (as BIND's signer does): a DS line for
/// each published KSK/CSK, to hand to the parent or use as a trust
/// anchor.
pub(crate) fn write_dsset(origin: &Name, dir: &Path, keys: &[&ZoneKey]) -> Result<(), KeyError> {
    let path = dir.join(format!("dsset-{}", origin.to_lowercase()));
    let mut text = String::new();
    for key in keys {
        let line = key
            .ds_line(origin)
            .ok_or_else(|| bad(&key.path, "cannot compute the DS"))?;
        text.push_str(&line);
        text.push('\n');
    }
    fs::write(&path, text).map_err(|e| bad(&path, e.to_string()))
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), KeyError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| bad(path, e.to_string()))?;
    f.write_all(bytes).map_err(|e| bad(path, e.to_string()))
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), KeyError> {
    let mut f = fs::File::create_new(path).map_err(|e| bad(path, e.to_string()))?;
    f.write_all(bytes).map_err(|e| bad(path, e.to_string()))
}

/// The 32-byte private scalar of ring's PKCS#8 document: the ECPrivateKey
/// (RFC 5915) inside it opens `INTEGER 1, OCTET STRING (32)`.
fn pkcs8_private_scalar(pkcs8: &[u8]) -> Option<&[u8]> {
    const MARK: [u8; 5] = [0x02, 0x01, 0x01, 0x04, 0x20];
    let at = pkcs8.windows(MARK.len()).position(|w| w == MARK)? + MARK.len();
    pkcs8.get(at..at + 32)
}

/// DNSKEY RDATA: flags, protocol 3, algorithm, public key.
pub(crate) fn dnskey_rdata(flags: u16, public: &[u8]) -> Vec<u8> {
    let mut rdata = flags.to_be_bytes().to_vec();
    rdata.extend_from_slice(&[3, ALGORITHM]);
    rdata.extend_from_slice(public);
    rdata
}

/// RFC 4034 Appendix B: the key tag of a DNSKEY RDATA (algorithm 1 aside).
pub(crate) fn key_tag(rdata: &[u8]) -> u16 {
    let mut ac: u32 = 0;
    for (i, &b) in rdata.iter().enumerate() {
        ac += if i & 1 == 1 {
            u32::from(b)
        } else {
            u32::from(b) << 8
        };
    }
    ac += (ac >> 16) & 0xffff;
    (ac & 0xffff) as u16
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn key_tag_matches_rfc_4034_example() {
        // RFC 4034 5.4: the DNSKEY of dskey.example.com has key tag 60485.
        let b64 = "AQOeiiR0GOMYkDshWoSKz9XzfwJr1AYtsmx3TGkJaNXVbfi/2pHm822aJ5iI9BMzNXxeYCmZDRD99WYwYqUSdjMmmAphXdvxegXd/M5+X7OrzKBaMbCVdFLUUh6DhweJBjEVv5f2wwjM9XzcnOf+EPbtG9DMBmADjFDc2w/rljwvFw==";
        let public = data_encoding::BASE64.decode(b64.as_bytes()).unwrap();
        let mut rdata = 256u16.to_be_bytes().to_vec();
        rdata.extend_from_slice(&[3, 5]);
        rdata.extend_from_slice(&public);
        assert_eq!(key_tag(&rdata), 60485);
    }

    #[test]
    fn generated_key_is_written_as_bind_files_and_loads_back() {
        let dir = std::env::temp_dir().join(format!("steer-keys-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let made = ZoneKey::load_or_generate("example.test.", &dir, 1_000)
            .unwrap()
            .remove(0);
        assert_eq!(made.public.len(), 64);
        assert_eq!(made.timing, KeyTiming::from_now(1_000));
        assert_eq!(made.state_at(1_000), KeyState::Active);
        let again = ZoneKey::load_or_generate("example.test.", &dir, 2_000)
            .unwrap()
            .remove(0);
        assert_eq!(again.timing, made.timing);
        assert_eq!(made.public, again.public);
        assert_eq!(made.tag, again.tag);
        assert_eq!(made.tag, made.dnskey().calculate_key_tag().unwrap());
        let name = format!("Kexample.test.+013+{:05}.private", made.tag);
        assert_eq!(again.path, dir.join(name));
        let _ = fs::remove_dir_all(&dir);
    }
}
