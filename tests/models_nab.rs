//! Runs the NAB evaluation on the shared data and asserts the floors of issue 4.

use std::path::PathBuf;

use adpulse::models::nab;

fn nab_dir() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.join("datasets/nab")
}

#[test]
fn nab_floors_hold_with_one_parameter_set() {
    let dir = nab_dir();
    assert!(
        dir.join("windows.json").is_file(),
        "NAB data missing: expected {} (the repository carries it in datasets/)",
        dir.display()
    );
    let result = match nab::evaluate_dir(&dir, None) {
        Ok(r) => r,
        Err(e) => panic!("NAB evaluation failed: {e}"),
    };
    let mut report = Vec::new();
    if let Err(e) = adpulse::models::cli::nab_report(&dir, &mut report) {
        panic!("NAB report failed: {e}");
    }
    println!("{}", String::from_utf8_lossy(&report));
    assert_eq!(result.windows, 7, "the shared NAB subset has 7 windows");
    assert!(
        result.detected >= 6,
        "only {}/{} windows detected",
        result.detected,
        result.windows
    );
    assert!(
        result.fp_per_1000 <= 2.0,
        "{:.2} false-positive alerts per 1000 rows",
        result.fp_per_1000
    );
}
