//! Password hashes as PostgreSQL stores them in `pg_authid.rolpassword`, computed here so the clear
//! text never travels in a statement, and compared here so an unchanged password costs nothing.
//!
//! Zalando re-hashes every password with a fresh random salt and compares the strings, so every
//! role with a SCRAM password is altered on every sync. [`matches`] instead re-derives the stored
//! verifier from the clear text with the stored salt and iteration count: a role whose password
//! did not change gets no statement at all.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use md5::Md5;
use rand::Rng;
use sha2::{Digest, Sha256};

/// Iterations of a verifier written here (PostgreSQL's `scram_iterations` default).
pub const SCRAM_ITERATIONS: u32 = 4096;
/// Salt length of a verifier written here, in bytes (as PostgreSQL's own).
pub const SCRAM_SALT_LEN: usize = 16;
/// A stored verifier with more iterations than this is not re-derived (a hostile catalog entry
/// must not stall the controller); it counts as different and is replaced once.
pub const MAX_VERIFY_ITERATIONS: u32 = 1_000_000;

const SCRAM_PREFIX: &str = "SCRAM-SHA-256$";
const MD5_PREFIX: &str = "md5";

/// `password_encryption`: how a new password is hashed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Method {
    #[default]
    ScramSha256,
    Md5,
}

impl Method {
    /// The method of a `postgresql.parameters.password_encryption` value: `md5` is md5, anything
    /// else (unset, `scram-sha-256`, a typo) is SCRAM, as in Zalando.
    pub fn from_setting(value: Option<&str>) -> Method {
        match value.map(str::trim) {
            Some(v) if v.eq_ignore_ascii_case("md5") => Method::Md5,
            _ => Method::ScramSha256,
        }
    }

    /// The method that produced a stored hash, if it is one PostgreSQL would accept as a hash.
    pub fn of_stored(stored: &str) -> Option<Method> {
        if is_md5_hash(stored) {
            Some(Method::Md5)
        } else if ScramVerifier::parse(stored).is_some() {
            Some(Method::ScramSha256)
        } else {
            None
        }
    }
}

/// The value for `PASSWORD '…'`. A `clear` that already is a hash PostgreSQL accepts (an md5
/// hash or a SCRAM verifier, as an administrator may put into a Secret) is passed through, as
/// both Zalando and the server itself do.
pub fn hash(method: Method, user: &str, clear: &str) -> String {
    if Method::of_stored(clear).is_some() {
        return clear.to_string();
    }
    match method {
        Method::Md5 => md5_hash(user, clear),
        Method::ScramSha256 => {
            let mut salt = [0u8; SCRAM_SALT_LEN];
            rand::rng().fill_bytes(&mut salt);
            scram_verifier(clear, &salt, SCRAM_ITERATIONS)
        }
    }
}

/// Whether `stored` (from `pg_authid.rolpassword`) is the hash of `clear` for `user`: the md5
/// hash recomputed, or the SCRAM keys re-derived with the stored salt and iteration count. A
/// pre-hashed `clear` matches only the identical string.
pub fn matches(stored: &str, user: &str, clear: &str) -> bool {
    if Method::of_stored(clear).is_some() {
        return stored == clear;
    }
    if is_md5_hash(stored) {
        return md5_hash(user, clear) == stored;
    }
    let Some(verifier) = ScramVerifier::parse(stored) else {
        return false;
    };
    if verifier.iterations > MAX_VERIFY_ITERATIONS {
        return false;
    }
    let key = memo_key(stored, clear);
    if let Some(known) = memo().lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
        return *known;
    }
    let (stored_key, server_key) = scram_keys(clear, &verifier.salt, verifier.iterations);
    let result = verifier.stored_key == stored_key && verifier.server_key == server_key;
    let mut memo = memo().lock().unwrap_or_else(|p| p.into_inner());
    if memo.len() >= MEMO_MAX {
        memo.clear();
    }
    memo.insert(key, result);
    result
}

/// Verifications remembered: a SCRAM check costs 4096 HMAC rounds, and every sync of every
/// cluster checks every role's password, nearly always with the same verifier and Secret.
const MEMO_MAX: usize = 65_536;

/// What a verification is remembered by: a digest of the verifier and the clear text (the
/// verifier holds a fresh salt, so a changed password or verifier is a new key).
fn memo_key(stored: &str, clear: &str) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(stored.as_bytes());
    hasher.update([0u8]);
    hasher.update(clear.as_bytes());
    hasher.finalize().into()
}

fn memo() -> &'static std::sync::Mutex<std::collections::HashMap<[u8; 32], bool>> {
    static MEMO: std::sync::OnceLock<std::sync::Mutex<std::collections::HashMap<[u8; 32], bool>>> =
        std::sync::OnceLock::new();
    MEMO.get_or_init(Default::default)
}

/// `md5` + hex(md5(password ‖ user)): PostgreSQL's md5 scheme, the user name as salt.
fn md5_hash(user: &str, clear: &str) -> String {
    let mut hasher = Md5::new();
    hasher.update(clear.as_bytes());
    hasher.update(user.as_bytes());
    let digest = hasher.finalize();
    let mut out = String::with_capacity(35);
    out.push_str(MD5_PREFIX);
    for byte in digest {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

fn is_md5_hash(value: &str) -> bool {
    value.len() == 35
        && value.starts_with(MD5_PREFIX)
        && value[3..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// A parsed `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`.
struct ScramVerifier {
    iterations: u32,
    salt: Vec<u8>,
    stored_key: Vec<u8>,
    server_key: Vec<u8>,
}

impl ScramVerifier {
    fn parse(value: &str) -> Option<ScramVerifier> {
        let rest = value.strip_prefix(SCRAM_PREFIX)?;
        let (head, keys) = rest.split_once('$')?;
        let (iterations, salt) = head.split_once(':')?;
        let (stored_key, server_key) = keys.split_once(':')?;
        let verifier = ScramVerifier {
            iterations: iterations.parse().ok().filter(|&i| i > 0)?,
            salt: BASE64.decode(salt).ok()?,
            stored_key: BASE64.decode(stored_key).ok()?,
            server_key: BASE64.decode(server_key).ok()?,
        };
        let sizes_ok = verifier.stored_key.len() == 32 && verifier.server_key.len() == 32;
        sizes_ok.then_some(verifier)
    }
}

fn scram_verifier(clear: &str, salt: &[u8], iterations: u32) -> String {
    let (stored_key, server_key) = scram_keys(clear, salt, iterations);
    format!(
        "{SCRAM_PREFIX}{iterations}:{}${}:{}",
        BASE64.encode(salt),
        BASE64.encode(stored_key),
        BASE64.encode(server_key)
    )
}

/// StoredKey = H(HMAC(SaltedPassword, "Client Key")), ServerKey = HMAC(SaltedPassword, "Server
/// Key"), SaltedPassword = PBKDF2-HMAC-SHA-256(SASLprep(password), salt, iterations) (RFC 5802,
/// RFC 7677). Like PostgreSQL, a password SASLprep refuses is used as it is.
fn scram_keys(clear: &str, salt: &[u8], iterations: u32) -> ([u8; 32], [u8; 32]) {
    let prepared = stringprep::saslprep(clear)
        .map(|p| p.into_owned())
        .unwrap_or_else(|_| clear.to_string());
    let salted = pbkdf2_sha256(prepared.as_bytes(), salt, iterations);
    let client_key = hmac_sha256(&salted, b"Client Key");
    let stored_key: [u8; 32] = Sha256::digest(client_key).into();
    let server_key = hmac_sha256(&salted, b"Server Key");
    (stored_key, server_key)
}

fn keyed(key: &[u8]) -> Hmac<Sha256> {
    // HMAC takes a key of any length; the error branch cannot happen.
    <Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap_or_else(|_| unreachable!())
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac = keyed(key);
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// PBKDF2 with one output block: the derived key is exactly one SHA-256 length.
fn pbkdf2_sha256(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let base = keyed(password);
    let mut mac = base.clone();
    mac.update(salt);
    mac.update(&1u32.to_be_bytes());
    let mut u: [u8; 32] = mac.finalize().into_bytes().into();
    let mut out = u;
    for _ in 1..iterations {
        let mut mac = base.clone();
        mac.update(&u);
        u = mac.finalize().into_bytes().into();
        for (o, b) in out.iter_mut().zip(u) {
            *o ^= b;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // Verifiers written by PostgreSQL 17 itself (`CREATE ROLE … PASSWORD …` with
    // password_encryption = scram-sha-256, resp. md5).
    const ALICE: &str = "SCRAM-SHA-256$4096:Zrh3wfthtwu0TzIslhZJYQ==$aL/A/paitKgnVo63+CWHDkKwJoA3BCtCsP0tU4rsTEo=:bKxNUiQe+I12BemaJMtOrPbBi10dH86B5zCBdURqbZs=";
    const WEIRD: &str = "SCRAM-SHA-256$4096:Dxdi8Pd1/sVk52FWwoN4yw==$o7BwVjDXomTUmqgsz2fD+ku652puCkccoL1/0KaSABE=:20+XHZgBOLKBJ/ukauJgNCH9tYm9559Z10QQkqG1Rl0=";
    const SOFT_HYPHEN: &str = "SCRAM-SHA-256$4096:IW5ZnSy7CpiCsWkxEKEBNA==$U0vCLdyW+1EPZIG3/iZiTCfvbaWBJcLi7kQRV52mYGQ=:Eiul7oMqM9vqGmJ+yF1pCVhNUZL/AarUfWCyA73nyGM=";
    const ROMAN_NINE: &str = "SCRAM-SHA-256$4096:0u79HqNNRFkjhED75BHTtA==$eSXq0Lxq9wB7THF/VtxUQbQX50iNzEpJXM9i0a+MZwY=:uL7lBoUylPBBAPx75kqhLWrzr59fiLaSq48HsqwnB7k=";
    const SPACE: &str = "SCRAM-SHA-256$4096:6xoydkHYhGFT7xJFWhgfNA==$Q6MoiQQ2FZBZ2P4i9UMZbCQ3G4FTVcvGNzM0Q7He3pQ=:pyB3zyKDBKj9JuY11ouC/eMatuCKh2x7Glv+YlHwzIQ=";
    const BOB_MD5: &str = "md5a2cc14bcc08bcb211f578153967abd6d";

    #[test]
    fn verifiers_written_by_postgresql_match_their_passwords() {
        assert!(matches(ALICE, "alice", "hunter2"));
        assert!(!matches(ALICE, "alice", "hunter3"));
        assert!(!matches(ALICE, "alice", ""));
        assert!(matches(WEIRD, "we\"ird", "pa'ss\\word"));
        // SASLprep: a soft hyphen maps to nothing, and Ⅸ normalises to IX.
        assert!(matches(SOFT_HYPHEN, "softhyphen", "I\u{00AD}X"));
        assert!(matches(SOFT_HYPHEN, "softhyphen", "IX"));
        assert!(matches(ROMAN_NINE, "roman", "\u{2168}"));
        assert!(matches(SPACE, "emptyish", " "));
        assert!(matches(BOB_MD5, "bob", "hunter2"));
        assert!(
            !matches(BOB_MD5, "alice", "hunter2"),
            "md5 is salted by the user"
        );
        assert!(!matches(BOB_MD5, "bob", "hunter3"));
    }

    #[test]
    fn remembered_verifications_still_see_a_changed_password() {
        let stored = hash(Method::ScramSha256, "app", "first");
        for _ in 0..2 {
            assert!(matches(&stored, "app", "first"));
            assert!(!matches(&stored, "app", "second"));
        }
        let again = hash(Method::ScramSha256, "app", "second");
        assert!(matches(&again, "app", "second"));
        assert!(!matches(&again, "app", "first"));
    }

    #[test]
    fn hashes_verify_and_have_the_expected_shape() {
        for clear in [
            "hunter2",
            "",
            "pa'ss\\word",
            "日本語 パスワード",
            "I\u{00AD}X",
        ] {
            let scram = hash(Method::ScramSha256, "u", clear);
            assert!(scram.starts_with("SCRAM-SHA-256$4096:"), "{scram}");
            assert_eq!(Method::of_stored(&scram), Some(Method::ScramSha256));
            assert!(matches(&scram, "u", clear));
            assert!(!matches(&scram, "u", "other"));
            let salt = scram.split(['$', ':']).nth(2).unwrap_or_default();
            assert_eq!(BASE64.decode(salt).map(|s| s.len()), Ok(SCRAM_SALT_LEN));
            let md5 = hash(Method::Md5, "u", clear);
            assert_eq!(Method::of_stored(&md5), Some(Method::Md5));
            assert!(matches(&md5, "u", clear));
        }
        assert_eq!(hash(Method::Md5, "bob", "hunter2"), BOB_MD5);
        // A fresh salt every time.
        assert_ne!(
            hash(Method::ScramSha256, "u", "x"),
            hash(Method::ScramSha256, "u", "x")
        );
        // Same salt and iterations as PostgreSQL give PostgreSQL's verifier.
        let salt = BASE64
            .decode("Zrh3wfthtwu0TzIslhZJYQ==")
            .unwrap_or_default();
        assert_eq!(scram_verifier("hunter2", &salt, 4096), ALICE);
    }

    #[test]
    fn prehashed_secrets_pass_through() {
        assert_eq!(hash(Method::ScramSha256, "bob", BOB_MD5), BOB_MD5);
        assert_eq!(hash(Method::Md5, "alice", ALICE), ALICE);
        assert!(matches(ALICE, "alice", ALICE));
        assert!(!matches(ALICE, "alice", BOB_MD5));
        // Almost a hash is a password.
        let almost = "md5a2cc14bcc08bcb211f578153967abd6z";
        assert_eq!(Method::of_stored(almost), None);
        assert!(hash(Method::Md5, "bob", almost) != almost);
    }

    #[test]
    fn malformed_stored_values_never_match_nor_panic() {
        for stored in [
            "",
            "hunter2",
            "SCRAM-SHA-256$",
            "SCRAM-SHA-256$4096:",
            "SCRAM-SHA-256$0:Zrh3wfthtwu0TzIslhZJYQ==$aL/A/paitKgnVo63+CWHDkKwJoA3BCtCsP0tU4rsTEo=:bKxNUiQe+I12BemaJMtOrPbBi10dH86B5zCBdURqbZs=",
            "SCRAM-SHA-256$99999999999:Zg==$YQ==:YQ==",
            "SCRAM-SHA-256$4096:!!!$aL/A:bKxN",
            "SCRAM-SHA-256$4096:Zg==$YQ==:YQ==",
            "md5",
            "md5日本語日本語日本語日本語日本語",
        ] {
            assert!(!matches(stored, "u", "hunter2"), "{stored:?}");
        }
        let huge = "SCRAM-SHA-256$4294967295:Zrh3wfthtwu0TzIslhZJYQ==$aL/A/paitKgnVo63+CWHDkKwJoA3BCtCsP0tU4rsTEo=:bKxNUiQe+I12BemaJMtOrPbBi10dH86B5zCBdURqbZs=";
        assert!(!matches(huge, "alice", "hunter2"), "too many iterations");
    }

    #[test]
    fn methods_from_the_setting() {
        assert_eq!(Method::from_setting(None), Method::ScramSha256);
        assert_eq!(Method::from_setting(Some("md5")), Method::Md5);
        assert_eq!(Method::from_setting(Some(" MD5 ")), Method::Md5);
        assert_eq!(
            Method::from_setting(Some("scram-sha-256")),
            Method::ScramSha256
        );
        assert_eq!(Method::from_setting(Some("plain")), Method::ScramSha256);
    }
}
