use super::*;

#[test]
fn stat_fields_are_counted_after_the_last_parenthesis() {
    // A command name with spaces and a ')' of its own, as a process may set it.
    let stat = "4242 (evil) name) S 1 4242 4242 0 -1 4194560 114 0 0 0 0 0 0 0 20 0 1 0 987654 1826816 131 18446744073709551615";
    assert_eq!(parse_stat(stat), Some(('S', 987_654)));
    let zombie = "7 (sh) Z 1 7 7 0 -1 4194560 114 0 0 0 0 0 0 0 20 0 1 0 55 0 0";
    assert_eq!(parse_stat(zombie), Some(('Z', 55)));
    assert_eq!(parse_stat("7 (sh) S 1 2"), None, "truncated line");
    assert_eq!(parse_stat("garbage"), None);
}

#[test]
fn our_own_process_is_alive_and_a_different_start_time_is_not() {
    let me = ProcessId::of(std::process::id()).expect("this process exists");
    assert!(me.alive());
    let reused = ProcessId {
        start_ticks: me.start_ticks + 1,
        ..me
    };
    assert!(!reused.alive(), "same pid, other start time: a reused pid");
    // pid_max is at most 2^22: this pid never exists.
    assert_eq!(ProcessId::of(u32::MAX - 1), None);
}

#[test]
fn records_round_trip_through_an_atomic_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = state_path(&dir.path().join("c"));
    assert_eq!(read::<ContainerRecord>(&path).unwrap(), None);
    let t: jiff::Timestamp = "2025-05-01T10:00:00.123456789Z".parse().unwrap();
    let rec = ContainerRecord {
        restart_count: 3,
        running: Some(Instance {
            id: "pontifex://u/c-3".into(),
            shim: ProcessId {
                pid: 10,
                start_ticks: 100,
            },
            process: ProcessId {
                pid: 11,
                start_ticks: 101,
            },
            started_at: t,
        }),
        last_termination: Some(Ended {
            id: "pontifex://u/c-2".into(),
            exit_code: 137,
            signal: Some(9),
            reason: "Error".into(),
            message: None,
            started_at: t,
            finished_at: t,
        }),
        finished: false,
    };
    write(&path, &rec).unwrap();
    assert_eq!(read::<ContainerRecord>(&path).unwrap(), Some(rec.clone()));
    // No temporary file is left next to it.
    let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("state.json")]);
    // An older file without `finished` still reads.
    std::fs::write(
        &path,
        r#"{"restart_count":1,"running":null,"last_termination":null}"#,
    )
    .unwrap();
    assert_eq!(
        read::<ContainerRecord>(&path)
            .unwrap()
            .unwrap()
            .restart_count,
        1
    );
    std::fs::write(&path, "not json").unwrap();
    assert!(matches!(
        read::<ContainerRecord>(&path),
        Err(StateError::Parse { .. })
    ));
}

#[test]
fn exit_files_are_per_instance() {
    let d = Path::new("/x/c");
    assert_eq!(exit_path(d, 0), PathBuf::from("/x/c/0.exit"));
    assert_eq!(exit_path(d, 12), PathBuf::from("/x/c/12.exit"));
}
