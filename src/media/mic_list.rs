//! The microphones as `roverd devices` prints them: one line per capture device, ready to
//! paste into roverd.toml. Pure; the listing itself comes from the ALSA backend.

/// What `roverd devices` says about microphones when it was built without ALSA.
const NOT_BUILT: &str = "This roverd was built without ALSA microphone support (the cargo \
    feature mic-alsa): it lists no microphones, and audio.device can only be \"auto\" or \
    \"test\" (the test tone) or \"none\".\n";

/// One capture device, for `roverd devices`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MicInfo {
    /// What goes in `audio.device`.
    pub name: String,
    pub description: Option<String>,
    /// Standard rates the device offers (or its range's ends when it offers none of them).
    pub rates: Vec<u32>,
    pub channels: Vec<u16>,
    pub formats: Vec<String>,
}

/// The listing `roverd devices` prints: one config-pasteable line per device, or a plain
/// statement that there are none and what to check.
pub fn format_microphones(mics: &[MicInfo]) -> String {
    if mics.is_empty() {
        if !cfg!(feature = "mic-alsa") {
            return NOT_BUILT.to_owned();
        }
        return "No ALSA capture devices found. Check that the microphone is plugged in \
                (`arecord -l` lists sound cards) and that roverd's user is in the `audio` \
                group. Meanwhile audio.device = \"auto\" streams the test tone.\n"
            .to_owned();
    }
    let mut out = String::from("Microphones (ALSA capture devices); put one in roverd.toml:\n");
    for m in mics {
        let join = |v: &[u32]| v.iter().map(u32::to_string).collect::<Vec<_>>().join(", ");
        let channels: Vec<u32> = m.channels.iter().map(|&c| u32::from(c)).collect();
        out.push_str(&format!(
            "[audio] device = {:?}   # {}Hz: {}; channels: {}; formats: {}\n",
            m.name,
            m.description
                .as_deref()
                .map(|d| format!("{}; ", d.lines().next().unwrap_or(d)))
                .unwrap_or_default(),
            join(&m.rates),
            join(&channels),
            m.formats.join(", ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(not(feature = "mic-alsa"))]
    fn without_the_backend_the_listing_says_so() {
        let text = format_microphones(&[]);
        assert!(
            text.contains("built without ALSA microphone support"),
            "{text}"
        );
        assert!(text.contains("mic-alsa"), "{text}");
    }

    #[test]
    fn each_device_is_one_line() {
        let mic = MicInfo {
            name: "hw:1,0".into(),
            description: None,
            rates: vec![48_000],
            channels: vec![1, 2],
            formats: vec!["i16".into()],
        };
        let text = format_microphones(&[mic.clone(), mic]);
        assert_eq!(text.lines().count(), 3, "{text}");
        assert!(
            text.contains(
                "[audio] device = \"hw:1,0\"   # Hz: 48000; channels: 1, 2; formats: i16\n"
            ),
            "{text}"
        );
    }
}
