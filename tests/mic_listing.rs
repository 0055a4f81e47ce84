//! `list_microphones` (for `roverd devices`) against a real ALSA configuration: a capture
//! PCM defined with ALSA's `file` plugin, no sound card. Its own test binary, since it
//! points this process's ALSA at a config file (ALSA reads `ALSA_CONFIG_PATH` itself).

use roverd::testing::format_microphones;
use roverd::testing::list_microphones;

#[test]
fn the_listing_names_a_capture_device_in_a_line_that_pastes_into_the_config() {
    let dir = std::env::temp_dir().join(format!("roverd-mic-list-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let recording = dir.join("silence.raw");
    std::fs::write(&recording, vec![0u8; 96_000]).expect("recording");
    let conf = dir.join("asound.conf");
    std::fs::write(
        &conf,
        format!(
            "pcm.roverd_listed_mic {{\n  type file\n  slave.pcm \"null\"\n  file \"/dev/null\"\n  infile \"{}\"\n  format \"raw\"\n  hint {{ show on description \"Listed test microphone\" }}\n}}\n",
            recording.display()
        ),
    )
    .expect("alsa conf");
    // The only thread of this binary that touches the environment, before any ALSA call.
    std::env::set_var(
        "ALSA_CONFIG_PATH",
        format!("/usr/share/alsa/alsa.conf:{}", conf.display()),
    );
    let mics = list_microphones();
    let _ = std::fs::remove_dir_all(&dir);
    let mic = mics
        .iter()
        .find(|m| m.name == "roverd_listed_mic")
        .unwrap_or_else(|| panic!("the file-plugin PCM is not listed: {mics:?}"));
    assert!(
        mic.rates.contains(&48_000) && mic.rates.contains(&44_100),
        "{mic:?}"
    );
    assert!(
        mic.channels.contains(&1) && mic.channels.contains(&2),
        "{mic:?}"
    );
    assert!(mic.formats.iter().any(|f| f == "i16"), "{mic:?}");
    assert!(
        !mics.iter().any(|m| m.name == "null"),
        "ALSA's null device captures nothing and is not a microphone"
    );
    let text = format_microphones(&mics);
    assert!(
        text.contains("[audio] device = \"roverd_listed_mic\"   # Listed test microphone"),
        "{text}"
    );
}
