//! R-AUD-2: the Merkle tree and the canonical JSON against published test vectors
//! (tests/data/rfc6962_vectors.json: the Certificate Transparency reference implementation's
//! merkle_tree_test.cc, and cyberphone/json-canonicalization's test data with RFC 8785
//! appendix B's numbers; each source named in the file).

use etal_store::seal::jcs::canonical;
use etal_store::seal::merkle::{self, Hash};
use serde_json::Value;

fn vectors() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/data/rfc6962_vectors.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).expect("the vectors file")).unwrap()
}

fn hash(v: &Value) -> Hash {
    hex::decode(v.as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap()
}

fn hashes(v: &Value) -> Vec<Hash> {
    v.as_array().unwrap().iter().map(hash).collect()
}

fn leaves(v: &Value) -> Vec<Hash> {
    v["leaves"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| merkle::leaf_hash(&hex::decode(l.as_str().unwrap()).unwrap()))
        .collect()
}

#[test]
fn r_aud_2_roots_match_rfc_6962_reference_vectors() {
    let v = vectors();
    let leaves = leaves(&v);
    assert_eq!(merkle::empty_root(), hash(&v["empty_root"]));
    let roots = v["roots"].as_object().unwrap();
    assert_eq!(roots.len(), 8);
    for (size, want) in roots {
        let n: usize = size.parse().unwrap();
        assert_eq!(merkle::root(&leaves[..n]), hash(want), "root of {n}");
    }
}

#[test]
fn r_aud_2_inclusion_and_consistency_proofs_match_rfc_6962_reference_vectors() {
    let v = vectors();
    let leaves = leaves(&v);
    let inclusion = v["inclusion"].as_array().unwrap();
    assert!(inclusion.len() >= 5);
    for case in inclusion {
        let (i, n) = (
            case["leaf_index"].as_u64().unwrap(),
            case["tree_size"].as_u64().unwrap(),
        );
        let want = hashes(&case["path"]);
        assert_eq!(
            merkle::inclusion_path(i, &leaves[..n as usize]),
            want,
            "{i} in {n}"
        );
        let root = merkle::root(&leaves[..n as usize]);
        assert!(merkle::verify_inclusion(
            i,
            n,
            &leaves[i as usize],
            &want,
            &root
        ));
    }
    let consistency = v["consistency"].as_array().unwrap();
    assert!(consistency.len() >= 4);
    for case in consistency {
        let (m, n) = (
            case["old_size"].as_u64().unwrap(),
            case["new_size"].as_u64().unwrap(),
        );
        let want = hashes(&case["proof"]);
        assert_eq!(
            merkle::consistency_proof(m, &leaves[..n as usize]),
            want,
            "{m} -> {n}"
        );
        let (old, new) = (
            merkle::root(&leaves[..m as usize]),
            merkle::root(&leaves[..n as usize]),
        );
        assert!(merkle::verify_consistency(m, n, &old, &new, &want));
    }
}

#[test]
fn r_aud_2_canonical_json_matches_rfc_8785_test_data() {
    let v = vectors();
    let cases = v["jcs"]["cases"].as_array().unwrap();
    assert!(cases.len() >= 5);
    for case in cases {
        let input: Value = serde_json::from_str(case["input"].as_str().unwrap()).unwrap();
        assert_eq!(
            hex::encode(canonical(&input)),
            case["expected_utf8_hex"].as_str().unwrap(),
            "{}",
            case["name"]
        );
    }
    let numbers = v["jcs"]["numbers"].as_array().unwrap();
    assert!(numbers.len() >= 20);
    for pair in numbers {
        let bits = u64::from_str_radix(pair[0].as_str().unwrap(), 16).unwrap();
        let x = f64::from_bits(bits);
        let value = serde_json::Number::from_f64(x).map(Value::Number).unwrap();
        assert_eq!(
            String::from_utf8(canonical(&value)).unwrap(),
            pair[1].as_str().unwrap(),
            "{x:e}"
        );
    }
}
