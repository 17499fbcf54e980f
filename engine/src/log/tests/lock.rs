//! The data directory lock: one store per directory, and the refusal names
//! the process holding it.

use super::support::Fixture;
use crate::log::{FlushPolicy, LogError};

#[test]
fn second_open_of_a_data_directory_is_refused_with_the_holder_pid() -> anyhow::Result<()> {
    let fixture = Fixture::new(FlushPolicy::Never);
    let store = fixture.open()?;
    store.create_topic("t", 1, Default::default())?;
    let pid = std::process::id();
    match fixture
        .open_std()
        .map_err(|error| error.downcast::<LogError>())
    {
        Err(Ok(error @ LogError::Locked { .. })) => {
            let LogError::Locked { path, holder } = &error else {
                unreachable!()
            };
            assert_eq!(path, fixture.dir.path());
            assert_eq!(*holder, Some(pid));
            assert!(error.to_string().contains(&format!("pid {pid}")), "{error}");
        }
        Err(Ok(other)) => panic!("unexpected error {other}"),
        Err(Err(other)) => panic!("unexpected error {other}"),
        Ok(_) => panic!("a second store opened a locked data directory"),
    }
    // The first store is unaffected, and the lock goes with it.
    assert!(store.partition("t", 0).is_ok());
    drop(store);
    let store = fixture.open_std()?;
    assert!(store.partition("t", 0).is_ok());
    Ok(())
}
