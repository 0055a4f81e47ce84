use super::*;

const EXAMPLE: &str = include_str!("../../config/roverd.toml");

/// The problems that `text` has, as printed; panics if it parses or fails to parse.
fn problems(text: &str) -> Vec<String> {
    match Config::from_toml_str(text) {
        Err(ConfigError::Invalid { problems, .. }) => {
            problems.iter().map(ToString::to_string).collect()
        }
        other => panic!("expected problems from {text:?}, got {other:?}"),
    }
}

/// The one problem that `text` has.
fn problem(text: &str) -> String {
    let mut found = problems(text);
    assert_eq!(found.len(), 1, "{found:#?}");
    found.remove(0)
}

fn parse_error(text: &str) -> String {
    match Config::from_toml_str(text) {
        Err(ConfigError::Parse { message, .. }) => message,
        other => panic!("expected a parse error from {text:?}, got {other:?}"),
    }
}

fn parse(text: &str) -> Config {
    Config::from_toml_str(text).unwrap().into_inner()
}

/// [`Config::validate`] on a copy, as the problems it finds.
fn check(c: &Config) -> Result<(), Vec<Problem>> {
    match c.clone().validate() {
        Ok(_) => Ok(()),
        Err(ConfigError::Invalid { problems, .. }) => Err(problems),
        Err(other) => panic!("validation can only find problems, got {other:?}"),
    }
}

// --- defaults and the example file

#[test]
fn defaults_are_the_design_values() {
    let c = Config::default();
    assert_eq!(c.http.listen.to_string(), "0.0.0.0:8080");
    assert_eq!((c.http.max_peers, &c.http.token), (8, &None));
    assert!(c.http.allowed_hosts.is_empty());
    assert_eq!(c.camera.device, CameraDevice::Auto);
    assert_eq!(
        (c.camera.width, c.camera.height, c.camera.fps),
        (640, 480, 30)
    );
    assert_eq!(c.video.bitrate_kbps, 1200);
    assert_eq!(c.video.keyframe_interval_s, 2.0);
    assert_eq!(c.audio.device, AudioDevice::Auto);
    assert_eq!(c.control.deadman_ms, 500);
    assert_eq!(c.motors.driver, MotorDriver::Sim);
    assert_eq!(c.motors.pwm_hz, 1000);
    assert_eq!((c.motors.max_speed, c.motors.ramp_per_s), (1.0, 4.0));
    let l = &c.motors.left;
    assert_eq!((l.in1, l.in2, l.en, l.stby), (17, 27, Some(12), None));
    let r = &c.motors.right;
    assert_eq!((r.in1, r.in2, r.en, r.stby), (23, 24, Some(13), None));
    assert!(!l.invert && !r.invert);
    assert_eq!((l.trim, r.trim), (1.0, 1.0));
    assert_eq!(c.log.level.as_str(), "info");
    assert_eq!(check(&c), Ok(()));
}

#[test]
fn example_file_is_the_defaults() {
    assert_eq!(parse(EXAMPLE), Config::default());
}

#[test]
fn empty_file_is_the_defaults() {
    assert_eq!(parse(""), Config::default());
}

#[test]
fn missing_keys_keep_their_defaults() {
    let c = parse("[camera]\nwidth = 320\n[motors.right]\ninvert = true\n");
    let mut expected = Config::default();
    expected.camera.width = 320;
    expected.motors.right.invert = true;
    assert_eq!(c, expected);
}

#[test]
fn every_key_is_read() {
    let c = parse(
        r#"
            [http]
            listen = "127.0.0.1:9000"
            max_peers = 2
            token = "s3cret-token"
            allowed_hosts = ["rover.example.com"]
            [camera]
            device = "/dev/video2"
            width = 1280
            height = 720
            fps = 15
            [video]
            bitrate_kbps = 2500
            keyframe_interval_s = 0.5
            [audio]
            device = "hw:1,0"
            [control]
            deadman_ms = 250
            [motors]
            pwm = "hardware"
            pwm_hz = 20000
            sim_file = "/run/roverd/motors.json"
            max_speed = 0.5
            ramp_per_s = 2
            [motors.left]
            in1 = 5
            in2 = 6
            en = 18
            stby = 22
            invert = true
            trim = 0.9
            [log]
            level = "debug"
            "#,
    );
    assert_eq!(c.http.listen, SocketAddr::from(([127, 0, 0, 1], 9000)));
    assert_eq!(c.http.max_peers, 2);
    assert_eq!(c.http.token.as_deref(), Some("s3cret-token"));
    assert_eq!(c.http.allowed_hosts, ["rover.example.com"]);
    assert_eq!(c.camera.device, CameraDevice::Path("/dev/video2".into()));
    assert_eq!(
        (c.camera.width, c.camera.height, c.camera.fps),
        (1280, 720, 15)
    );
    assert_eq!(c.video.bitrate_kbps, 2500);
    assert_eq!(c.video.keyframe_interval_s, 0.5);
    assert_eq!(c.audio.device, AudioDevice::Name("hw:1,0".into()));
    assert_eq!(c.control.deadman_ms, 250);
    assert_eq!(c.motors.pwm_hz, 20000);
    assert_eq!(
        c.motors.sim_file.as_deref(),
        Some(Path::new("/run/roverd/motors.json"))
    );
    assert_eq!((c.motors.max_speed, c.motors.ramp_per_s), (0.5, 2.0));
    let l = &c.motors.left;
    assert_eq!((l.in1, l.in2, l.en, l.stby), (5, 6, Some(18), Some(22)));
    assert_eq!((l.invert, l.trim), (true, 0.9));
    assert_eq!(c.log.level, LogLevel::Debug);
}

// --- phase 1: what the file says

#[test]
fn unknown_key_in_any_table_is_named() {
    for table in [
        "http",
        "camera",
        "video",
        "audio",
        "control",
        "motors",
        "motors.left",
        "motors.right",
        "log",
    ] {
        let message = parse_error(&format!("[{table}]\nbogus_key = 1\n"));
        assert!(message.contains("`bogus_key`"), "[{table}]: {message}");
        assert!(message.contains("line 2"), "[{table}]: {message}");
    }
    assert!(parse_error("[cammera]\nwidth = 640\n").contains("`cammera`"));
}

#[test]
fn wrong_type_and_bad_toml_are_parse_errors() {
    assert!(parse_error("[camera]\nwidth = \"640\"\n").contains("line 2"));
    assert!(parse_error("[camera\n").contains("line 1"));
}

#[test]
fn floats_may_be_written_as_integers() {
    let c = parse("[video]\nkeyframe_interval_s = 3\n[motors]\nmax_speed = 1\n");
    assert_eq!(c.video.keyframe_interval_s, 3.0);
    assert_eq!(c.motors.max_speed, 1.0);
}

// --- phase 2: the rules, in the order of the code

#[test]
fn problem_says_key_value_and_what_is_allowed() {
    let p = problems("[camera]\nwidth = 0\n");
    assert_eq!(p, ["camera.width = 0: must be between 16 and 4096"]);
}

#[test]
fn listen_must_be_ip_and_port() {
    assert_eq!(
        problem("[http]\nlisten = \"localhost:8080\"\n"),
        r#"http.listen = "localhost:8080": must be an IP address and a port, such as "0.0.0.0:8080" or "[::]:8080""#
    );
    assert_eq!(parse("[http]\nlisten = \"[::]:0\"\n").http.listen.port(), 0);
}

#[test]
fn max_peers_between_1_and_64() {
    assert!(problem("[http]\nmax_peers = 0\n").starts_with("http.max_peers = 0:"));
    assert!(problem("[http]\nmax_peers = 65\n").contains("between 1 and 64"));
    assert!(problem("[http]\nmax_peers = -3\n").contains("between 1 and 64"));
}

#[test]
fn token_needs_8_printable_characters_and_is_never_shown() {
    let short = problem("[http]\ntoken = \"abc\"\n");
    assert!(
        short.starts_with("http.token = <hidden, 3 characters>:"),
        "{short}"
    );
    assert!(problem("[http]\ntoken = \"\"\n").contains("at least 8"));
    let spaced = problem("[http]\ntoken = \"my secret phrase\"\n");
    assert!(!spaced.contains("secret"), "{spaced}");
    assert!(parse("[http]\ntoken = \"abcdefgh\"\n").http.token.is_some());
}

#[test]
fn a_viewer_token_needs_a_different_full_token() {
    let c = parse("[http]\ntoken = \"drive-token\"\nviewer_token = \"watch-token\"\n");
    assert_eq!(c.http.viewer_token.as_deref(), Some("watch-token"));
    let alone = problem("[http]\nviewer_token = \"watch-token\"\n");
    assert!(
        alone.starts_with("http.viewer_token = <hidden>: needs http.token"),
        "{alone}"
    );
    let same = problem("[http]\ntoken = \"same-token\"\nviewer_token = \"same-token\"\n");
    assert!(same.contains("must differ from http.token"), "{same}");
    assert!(
        !same.contains("same-token"),
        "a token must never be shown: {same}"
    );
    let short = problem("[http]\ntoken = \"drive-token\"\nviewer_token = \"abc\"\n");
    assert!(
        short.starts_with("http.viewer_token = <hidden, 3 characters>:"),
        "{short}"
    );
}

#[test]
fn tls_takes_files_or_self_signed() {
    let c = parse("[http.tls]\nself_signed = true\n");
    let tls = c.http.tls.unwrap();
    assert_eq!(tls.identity, TlsIdentity::SelfSigned);
    assert_eq!(tls.listen.to_string(), "0.0.0.0:8443");
    let c = parse("[http.tls]\nlisten = \"127.0.0.1:9443\"\ncert = \"/c.pem\"\nkey = \"/k.pem\"\n");
    let tls = c.http.tls.unwrap();
    assert_eq!(tls.listen.to_string(), "127.0.0.1:9443");
    assert_eq!(
        tls.identity,
        TlsIdentity::Files {
            cert: "/c.pem".into(),
            key: "/k.pem".into()
        }
    );
    assert!(parse("").http.tls.is_none());
    assert!(problem("[http.tls]\n")
        .starts_with("http.tls.self_signed = false: set either cert and key"));
    assert!(problem("[http.tls]\ncert = \"/c.pem\"\n").starts_with("http.tls.key = <missing"));
    assert!(
        problem("[http.tls]\nkey = \"/k.pem\"\nself_signed = true\n")
            .starts_with("http.tls.cert = <missing")
    );
    assert!(
        problem("[http.tls]\ncert = \"/c\"\nkey = \"/k\"\nself_signed = true\n")
            .starts_with("http.tls.self_signed = true: set either")
    );
    assert!(problem("[http.tls]\ncert = \"c.pem\"\nkey = \"/k.pem\"\n")
        .starts_with("http.tls.cert = \"c.pem\": must be an absolute path"));
    assert!(
        problem("[http]\nlisten = \"0.0.0.0:8443\"\n[http.tls]\nself_signed = true\n")
            .starts_with("http.tls.listen = \"0.0.0.0:8443\": must differ")
    );
    // Port 0 is a free port of the system's choice, a different one for each: the tests
    // run both listeners that way, and `--listen 127.0.0.1:0` must not turn them away.
    let both_free =
        Config::from_toml_str("[http.tls]\nlisten = \"127.0.0.1:0\"\nself_signed = true\n")
            .expect("valid");
    assert!(both_free
        .with_listen("127.0.0.1:0".parse().expect("an address"))
        .is_ok());
    assert!(
        problem("[http.tls]\nlisten = \"nowhere\"\nself_signed = true\n").contains("0.0.0.0:8443")
    );
    assert!(parse_error("[http.tls]\nport = 1\n").contains("port"));
}

#[test]
fn limits_have_ranges() {
    let c = parse("[limits]\noffers_per_minute = 5\nmessages_per_s = 10\nconnect_timeout_s = 3\nidle_timeout_s = 2\nbody_bytes = 8192\nmessage_bytes = 512\n");
    let l = &c.limits;
    assert_eq!(
        (
            l.offers_per_minute,
            l.messages_per_s,
            l.connect_timeout_s,
            l.idle_timeout_s,
            l.body_bytes,
            l.message_bytes
        ),
        (5, 10, 3, 2, 8192, 512)
    );
    let mut found = problems("[limits]\noffers_per_minute = 0\nbody_bytes = 10\nmessage_bytes = 5000\nmessages_per_s = -1\nconnect_timeout_s = 0\nidle_timeout_s = 601\n");
    found.sort();
    assert_eq!(
        found,
        [
            "limits.body_bytes = 10: must be between 4096 and 1048576",
            "limits.connect_timeout_s = 0: must be between 1 and 300",
            "limits.idle_timeout_s = 601: must be between 1 and 600",
            "limits.message_bytes = 5000: must be between 64 and 4096",
            "limits.messages_per_s = -1: must be between 5 and 1000",
            "limits.offers_per_minute = 0: must be between 1 and 600",
        ]
    );
}

#[test]
fn connection_limits_have_ranges_and_per_address_fits_the_total() {
    let c = parse("[limits]\nmax_connections = 100\nmax_connections_per_address = 10\n");
    assert_eq!(
        (
            c.limits.max_connections,
            c.limits.max_connections_per_address
        ),
        (100, 10)
    );
    let d = parse("");
    assert_eq!(
        (
            d.limits.max_connections,
            d.limits.max_connections_per_address
        ),
        (256, 32)
    );
    assert_eq!(
        problems("[limits]\nmax_connections = 2\nmax_connections_per_address = 0\n"),
        [
            "limits.max_connections = 2: must be between 16 and 1024",
            "limits.max_connections_per_address = 0: must be between 1 and 1024",
        ]
    );
    assert_eq!(
        problems("[limits]\nmax_connections = 20\nmax_connections_per_address = 40\n"),
        ["limits.max_connections_per_address = 40: must not be more than limits.max_connections (20)"]
    );
}

#[test]
fn allowed_hosts_are_bare_names() {
    assert_eq!(
        problems("[http]\nallowed_hosts = [\"ok.lan\", \"http://x.lan\", \"x.lan:8080\", \"\"]\n")
            .iter()
            .map(|p| p.split(" = ").next().unwrap())
            .collect::<Vec<_>>(),
        [
            "http.allowed_hosts[1]",
            "http.allowed_hosts[2]",
            "http.allowed_hosts[3]"
        ]
    );
}

#[test]
fn camera_device_forms() {
    let device = |v: &str| parse(&format!("[camera]\ndevice = {v}\n")).camera.device;
    assert_eq!(device("\"auto\""), CameraDevice::Auto);
    assert_eq!(device("\"test\""), CameraDevice::Test);
    assert_eq!(
        device("\"/dev/video1\""),
        CameraDevice::Path("/dev/video1".into())
    );
    assert_eq!(device("2"), CameraDevice::Index(2));
    assert_eq!(device("\"2\""), CameraDevice::Index(2));
    for bad in ["\"video0\"", "\"\"", "-1", "true", "\"Auto\""] {
        let p = problem(&format!("[camera]\ndevice = {bad}\n"));
        assert_eq!(
            p,
            format!("camera.device = {bad}: {}", CameraDevice::ALLOWED),
            "{bad}"
        );
    }
}

#[test]
fn camera_device_path_must_be_absolute() {
    let mut c = Config::default();
    c.camera.device = CameraDevice::Path("video0".into());
    assert_eq!(check(&c).unwrap_err()[0].key, "camera.device");
}

#[test]
fn frame_size_between_16_and_4096() {
    assert!(problem("[camera]\nheight = 8\n").starts_with("camera.height = 8:"));
    assert!(problem("[camera]\nwidth = 4097\n").contains("between 16 and 4096"));
    assert!(problem("[camera]\nwidth = -640\n").contains("between 16 and 4096"));
}

#[test]
fn frame_size_even() {
    let p = problem("[camera]\nwidth = 641\n");
    assert!(p.starts_with("camera.width = 641: must be even"), "{p}");
    assert!(problem("[camera]\nheight = 479\n").starts_with("camera.height = 479:"));
}

#[test]
fn fps_between_1_and_120() {
    assert!(problem("[camera]\nfps = 0\n").contains("between 1 and 120"));
    assert!(problem("[camera]\nfps = 121\n").contains("between 1 and 120"));
}

#[test]
fn bitrate_between_100_and_20000() {
    let p = problem("[video]\nbitrate_kbps = 99\n");
    assert_eq!(p, "video.bitrate_kbps = 99: must be between 100 and 20000");
    assert!(problem("[video]\nbitrate_kbps = 20001\n").contains("20000"));
}

#[test]
fn keyframe_interval_between_0_1_and_60() {
    for bad in ["0", "0.05", "61", "nan", "inf"] {
        let p = problem(&format!("[video]\nkeyframe_interval_s = {bad}\n"));
        assert!(p.contains("between 0.1 and 60"), "{p}");
    }
}

#[test]
fn audio_device_forms() {
    let device = |v: &str| parse(&format!("[audio]\ndevice = \"{v}\"\n")).audio.device;
    assert_eq!(device("auto"), AudioDevice::Auto);
    assert_eq!(device("test"), AudioDevice::Test);
    assert_eq!(device("none"), AudioDevice::None);
    assert_eq!(device("plughw:1,0"), AudioDevice::Name("plughw:1,0".into()));
    let p = problem("[audio]\ndevice = \" \"\n");
    assert_eq!(p, format!("audio.device = \" \": {}", AudioDevice::ALLOWED));
}

#[test]
fn deadman_between_100_and_5000() {
    for bad in [0, 50, 99, 5001, 10_000] {
        let p = problem(&format!("[control]\ndeadman_ms = {bad}\n"));
        assert_eq!(
            p,
            format!("control.deadman_ms = {bad}: must be between 100 and 5000")
        );
    }
    for good in [100, 5000] {
        let c =
            Config::from_toml_str(&format!("[control]\ndeadman_ms = {good}\n")).expect("in range");
        assert_eq!(c.control.deadman_ms, good);
    }
}

#[test]
fn every_gpio_driver_is_accepted_with_the_default_pins() {
    for (name, driver) in [
        ("l298n", MotorDriver::L298n),
        ("tb6612", MotorDriver::Tb6612),
        ("drv8833", MotorDriver::Drv8833),
    ] {
        let c = parse(&format!("[motors]\ndriver = \"{name}\"\n"));
        assert_eq!(c.motors.driver, driver);
        assert_eq!(c.motors.pwm, PwmKind::Auto);
    }
}

#[test]
fn hardware_pwm_only_on_the_pins_that_have_it() {
    // The default en pins, 12 and 13, have hardware PWM.
    let c = parse("[motors]\ndriver = \"l298n\"\npwm = \"hardware\"\n");
    assert_eq!(c.motors.pwm, PwmKind::Hardware);
    let p = problem("[motors]\ndriver = \"tb6612\"\npwm = \"hardware\"\n[motors.left]\nen = 22\n");
    assert!(
        p.starts_with("motors.left.en = 22: hardware PWM exists only on GPIO 12, 13, 18 and 19"),
        "{p}"
    );
    // A DRV8833 takes PWM on in1 and in2, so those must be hardware pins.
    let found = problems("[motors]\ndriver = \"drv8833\"\npwm = \"hardware\"\n");
    assert_eq!(found.len(), 4, "{found:#?}");
    assert!(found.iter().all(|p| p.contains("hardware PWM exists only")));
    parse(
        "[motors]\ndriver = \"drv8833\"\npwm = \"hardware\"\n\
             [motors.left]\nin1 = 12\nin2 = 18\n[motors.right]\nin1 = 13\nin2 = 19\n",
    );
    // Software PWM works on any pin, and the sim driver uses none.
    parse("[motors]\ndriver = \"l298n\"\n[motors.left]\nen = 22\n");
    parse("[motors]\npwm = \"hardware\"\n[motors.left]\nen = 22\n");
    assert_eq!(
        problem("[motors]\npwm = \"fast\"\n"),
        r#"motors.pwm = "fast": must be one of "auto", "software", "hardware""#
    );
}

#[test]
fn unknown_driver_lists_the_drivers() {
    assert_eq!(
        problem("[motors]\ndriver = \"L298N\"\n"),
        r#"motors.driver = "L298N": must be one of "sim", "l298n", "tb6612", "drv8833""#
    );
}

#[test]
fn software_pwm_between_100_and_5000_and_hardware_up_to_40000() {
    for pwm in ["auto", "software"] {
        for bad in [99, 5001, 0, 40_000] {
            let p = problem(&format!("[motors]\npwm = \"{pwm}\"\npwm_hz = {bad}\n"));
            assert!(
                p.starts_with(&format!(
                    "motors.pwm_hz = {bad}: must be between 100 and 5000"
                )),
                "{p}"
            );
        }
        parse(&format!("[motors]\npwm = \"{pwm}\"\npwm_hz = 100\n"));
        parse(&format!("[motors]\npwm = \"{pwm}\"\npwm_hz = 5000\n"));
    }
    assert!(problem("[motors]\npwm_hz = 20000\n").contains("motors.pwm = \"hardware\""));
    let hw = "[motors]\npwm = \"hardware\"\n";
    assert_eq!(
        parse(&format!("{hw}pwm_hz = 40000\n")).motors.pwm_hz,
        40_000
    );
    assert!(problem(&format!("{hw}pwm_hz = 0\n")).contains("between 1 and 40000"));
    assert!(problem(&format!("{hw}pwm_hz = 40001\n")).contains("between 1 and 40000"));
}

#[test]
fn the_sim_file_is_an_absolute_file_path() {
    assert_eq!(Config::default().motors.sim_file, None);
    for bad in ["motors.json", "", "/", "/tmp/.."] {
        let p = problem(&format!("[motors]\nsim_file = \"{bad}\"\n"));
        assert!(
            p.starts_with("motors.sim_file = ") && p.contains("absolute path of a file"),
            "{bad}: {p}"
        );
    }
    assert!(parse_error("[motors]\nsim_file = 3\n").contains("sim_file = 3"));
}

#[test]
fn max_speed_above_0_up_to_1() {
    for bad in ["0", "-0.5", "1.01", "nan", "inf"] {
        let p = problem(&format!("[motors]\nmax_speed = {bad}\n"));
        assert!(p.starts_with("motors.max_speed = "), "{p}");
    }
    assert_eq!(parse("[motors]\nmax_speed = 0.01\n").motors.max_speed, 0.01);
}

#[test]
fn ramp_positive_and_finite() {
    for bad in ["0", "-1", "nan", "inf"] {
        let p = problem(&format!("[motors]\nramp_per_s = {bad}\n"));
        assert!(p.contains("large value such as 1000 means no ramp"), "{p}");
    }
    assert_eq!(parse("[motors]\nramp_per_s = 1e9\n").motors.ramp_per_s, 1e9);
}

#[test]
fn pins_are_bcm_0_to_27() {
    let p = problem("[motors.left]\nin1 = 28\n");
    assert!(
        p.starts_with("motors.left.in1 = 28: must be a BCM GPIO number"),
        "{p}"
    );
    assert!(problem("[motors.right]\nen = 40\n").starts_with("motors.right.en = 40:"));
    assert!(problem("[motors.right]\nstby = 300\n").starts_with("motors.right.stby = 300:"));
    assert!(problem("[motors.left]\nin2 = -1\n").starts_with("motors.left.in2 = -1:"));
}

#[test]
fn pin_used_twice_names_both_keys() {
    assert_eq!(
        problem("[motors.right]\nin1 = 17\n"),
        "motors.right.in1 = 17: GPIO 17 is already used by motors.left.in1"
    );
    assert_eq!(
        problem("[motors.left]\nen = 27\n"),
        "motors.left.en = 27: GPIO 27 is already used by motors.left.in2"
    );
}

#[test]
fn stby_may_be_shared_by_both_motors() {
    let c = parse("[motors.left]\nstby = 22\n[motors.right]\nstby = 22\n");
    assert_eq!(
        (c.motors.left.stby, c.motors.right.stby),
        (Some(22), Some(22))
    );
    assert_eq!(
        problem("[motors.left]\nstby = 13\n"),
        "motors.right.en = 13: GPIO 13 is already used by motors.left.stby"
    );
}

#[test]
fn drv8833_en_claims_no_pin() {
    let mut c = Config::default();
    c.motors.driver = MotorDriver::Drv8833;
    c.motors.left.in1 = 12;
    assert_eq!(check(&c), Ok(()), "en = 12 is not a pin of the drv8833");
    c.motors.driver = MotorDriver::L298n;
    let keys: Vec<String> = check(&c).unwrap_err().into_iter().map(|p| p.key).collect();
    assert_eq!(keys, ["motors.left.en"], "but it is one of the l298n");
}

#[test]
fn trim_between_0_and_1() {
    for bad in ["-0.1", "1.5", "nan"] {
        let p = problem(&format!("[motors.left]\ntrim = {bad}\n"));
        assert!(p.starts_with("motors.left.trim = "), "{p}");
        assert!(p.contains("between 0 and 1"), "{p}");
    }
    assert_eq!(parse("[motors.right]\ntrim = 0\n").motors.right.trim, 0.0);
}

#[test]
fn log_level_names() {
    for level in LogLevel::ALL {
        let c = parse(&format!("[log]\nlevel = \"{}\"\n", level.as_str()));
        assert_eq!(c.log.level, level);
    }
    assert!(problem("[log]\nlevel = \"verbose\"\n").contains(r#""error", "warn""#));
}

// --- all together

#[test]
fn every_problem_is_reported_at_once() {
    let text = r#"
            [http]
            listen = "nowhere"
            [camera]
            width = 641
            fps = 0
            [motors]
            driver = "l298n"
            [motors.right]
            in1 = 17
            trim = 2
            [log]
            level = "loud"
        "#;
    let keys: Vec<String> = match Config::from_toml_str(text) {
        Err(ConfigError::Invalid { problems, .. }) => problems.into_iter().map(|p| p.key).collect(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        keys,
        [
            "http.listen",
            "camera.width",
            "camera.fps",
            "motors.right.trim",
            "motors.right.in1",
            "log.level"
        ]
    );
}

#[test]
fn a_value_too_big_for_its_field_is_reported_once() {
    let p = problems("[camera]\nwidth = 99999999999\n[motors.left]\nin1 = 256\n");
    assert_eq!(p.len(), 2, "{p:#?}");
}

#[test]
fn errors_name_the_file() {
    let dir = std::env::temp_dir().join(format!("roverd-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("roverd.toml");

    std::fs::write(&file, "[camera]\nwidth = 1\nheight = 3\n").unwrap();
    let text = Config::load(&file).unwrap_err().to_string();
    assert!(text.starts_with(&format!("config file {} has 2 problems:\n", file.display())));
    assert!(
        text.ends_with("\n  camera.height = 3: must be between 16 and 4096"),
        "{text}"
    );

    std::fs::write(&file, "[camera]\nwidht = 640\n").unwrap();
    let text = Config::load(&file).unwrap_err().to_string();
    assert!(text.contains(&file.display().to_string()) && text.contains("`widht`"));

    std::fs::write(&file, EXAMPLE).unwrap();
    assert_eq!(Config::load(&file).unwrap().into_inner(), Config::default());

    std::fs::remove_dir_all(&dir).unwrap();
    let err = Config::load(&file).unwrap_err();
    assert!(matches!(&err, ConfigError::Read { path, .. } if *path == file));
    assert!(std::error::Error::source(&err).is_some());
}

#[test]
fn simulate_forces_test_sources_and_sim_motors() {
    let mut c = parse(
        "[camera]\ndevice = \"/dev/video0\"\n[audio]\ndevice = \"hw:0\"\n[motors.left]\ntrim = 0.8\n",
    );
    c.motors.driver = MotorDriver::Tb6612;
    c.simulate();
    assert_eq!(c.camera.device, CameraDevice::Test);
    assert_eq!(c.audio.device, AudioDevice::Test);
    assert_eq!(c.motors.driver, MotorDriver::Sim);
    assert_eq!(c.motors.left.trim, 0.8);
}

// --- the validated config

#[test]
fn a_config_made_in_code_is_checked_before_it_can_be_served() {
    // ValidConfig has a private field: serve and serve_on take only what validate (or a
    // loader) returns, so these values cannot reach the motors.
    let mut c = Config::default();
    c.motors.ramp_per_s = f64::NAN;
    c.control.deadman_ms = 0;
    let err = c.validate().unwrap_err();
    let ConfigError::Invalid { problems, .. } = &err else {
        panic!("expected problems, got {err:?}");
    };
    let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys, ["control.deadman_ms", "motors.ramp_per_s"]);
    let text = err.to_string();
    assert!(text.starts_with("the config has 2 problems:\n"), "{text}");
    assert!(text.contains("motors.ramp_per_s = NaN: must be a finite number above 0"));
    assert!(text.contains("control.deadman_ms = 0: must be between 100 and 5000"));
}

#[test]
fn validate_words_problems_as_the_loader_does() {
    let mut c = Config::default();
    c.camera.width = 641;
    let from_code = c.validate().unwrap_err().to_string();
    let from_text = Config::from_toml_str("[camera]\nwidth = 641\n")
        .unwrap_err()
        .to_string();
    assert_eq!(from_code, from_text);
    let valid = Config::default().validate().unwrap();
    assert_eq!(*valid, Config::default());
}

#[test]
fn simulate_keeps_a_valid_config_valid() {
    // A DRV8833 on the hardware PWM pins takes GPIO 12 and 13, where en defaults to; the
    // simulated board counts en, so simulate must not make the pins clash.
    let mut c = Config::from_toml_str(
        "[motors]\ndriver = \"drv8833\"\npwm = \"hardware\"\n\
         [motors.left]\nin1 = 12\nin2 = 13\n[motors.right]\nin1 = 18\nin2 = 19\n",
    )
    .unwrap();
    c.simulate();
    assert_eq!(c.motors.driver, MotorDriver::Sim);
    assert_eq!(check(&c), Ok(()));
}

#[test]
fn listen_override_keeps_the_config_valid() {
    let c = Config::default().validate().unwrap();
    let addr: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    assert_eq!(c.clone().with_listen(addr).unwrap().http.listen, addr);
    let tls = Config::from_toml_str("[http.tls]\nself_signed = true\n").unwrap();
    let same = tls.http.tls.as_ref().unwrap().listen;
    let err = tls.with_listen(same).unwrap_err();
    assert!(err.to_string().contains("http.tls.listen"), "{err}");
}
