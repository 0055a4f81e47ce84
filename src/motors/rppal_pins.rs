//! The GPIO pins through rppal: software PWM at `pwm_hz` on any pin, or hardware PWM on
//! GPIO 12/13/18/19. Only built with the `gpio-rppal` feature.
//!
//! Letting go never lets a pin float: rppal's reset-on-drop (which returns an output pin to
//! its previous mode, an input) is off for every motor pin, and [`RppalPins`]'s own `Drop`
//! stops software PWM (rppal's `SoftPwm` does not stop its thread when dropped during a
//! panic), sets every output low, and disables the hardware PWM channels (a disabled
//! channel holds its pin low; the pin stays in its PWM function, never an input).

use crate::config::PwmKind;
use crate::motors::gpio::{PinWrite, Pins};
use crate::motors::motor::MotorError;
use std::collections::HashMap;

/// rppal's GPIO and PWM.
pub struct RppalPins {
    gpio: rppal::gpio::Gpio,
    outputs: HashMap<u8, rppal::gpio::OutputPin>,
    /// Software PWM frequency per pin.
    soft_pwm: HashMap<u8, f64>,
    hard_pwm: HashMap<u8, rppal::pwm::Pwm>,
    pi5: bool,
}

/// Whether the motors could be driven here, for `roverd devices`: the board model and the
/// GPIO character devices when rppal can open them, else why not and what that means.
pub fn describe_gpio() -> String {
    let mut chips: Vec<String> = std::fs::read_dir("/dev")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with("gpiochip"))
        .map(|n| format!("/dev/{n}"))
        .collect();
    chips.sort();
    let chips = if chips.is_empty() {
        "no /dev/gpiochip*".to_owned()
    } else {
        chips.join(", ")
    };
    let opened = rppal::system::DeviceInfo::new()
        .map_err(|e| e.to_string())
        .and_then(|info| {
            rppal::gpio::Gpio::new()
                .map(|_| info.model())
                .map_err(|e| e.to_string())
        });
    match opened {
        Ok(model) => format!(
            "GPIO reachable: {model} ({chips}); motors.driver may be \"l298n\", \"tb6612\" or \"drv8833\"\n"
        ),
        Err(why) => format!(
            "GPIO not reachable ({why}; {chips}): keep motors.driver = \"sim\" on this machine, \
             or on a Pi check that roverd's user is in the gpio group\n"
        ),
    }
}

impl RppalPins {
    pub fn open(driver: &'static str) -> Result<Self, MotorError> {
        let no_gpio = |e: &dyn std::fmt::Display| MotorError::NoGpio {
            driver,
            reason: e.to_string(),
        };
        let info = rppal::system::DeviceInfo::new().map_err(|e| no_gpio(&e))?;
        let gpio = rppal::gpio::Gpio::new().map_err(|e| no_gpio(&e))?;
        Ok(Self {
            gpio,
            outputs: HashMap::new(),
            soft_pwm: HashMap::new(),
            hard_pwm: HashMap::new(),
            pi5: matches!(info.model(), rppal::system::Model::RaspberryPi5),
        })
    }

    /// The sysfs PWM chip rppal uses: `pwmchip2` (RP1) on a Pi 5, `pwmchip0` before.
    fn pwm_chip(&self) -> u8 {
        if self.pi5 {
            2
        } else {
            0
        }
    }

    /// The hardware PWM channel behind a GPIO: Pi 5 has four, earlier models two (12 and
    /// 18 share channel 0, 13 and 19 share channel 1).
    fn hardware_channel(&self, pin: u8) -> Option<rppal::pwm::Channel> {
        use rppal::pwm::Channel::{Pwm0, Pwm1, Pwm2, Pwm3};
        match (pin, self.pi5) {
            (12, _) => Some(Pwm0),
            (13, _) => Some(Pwm1),
            (18, true) => Some(Pwm2),
            (19, true) => Some(Pwm3),
            (18, false) => Some(Pwm0),
            (19, false) => Some(Pwm1),
            _ => None,
        }
    }
}

impl Pins for RppalPins {
    fn claim(&mut self, pin: u8, key: &str, pwm: Option<(PwmKind, u32)>) -> Result<(), MotorError> {
        let fail = |reason: String| MotorError::Pin {
            pin,
            key: key.to_owned(),
            reason,
        };
        match pwm {
            Some((PwmKind::Hardware, hz)) => {
                let channel = self
                    .hardware_channel(pin)
                    .ok_or_else(|| fail("this GPIO has no hardware PWM channel".into()))?;
                if self
                    .hard_pwm
                    .keys()
                    .any(|&p| self.hardware_channel(p) == Some(channel))
                {
                    return Err(fail(format!(
                        "its hardware PWM channel ({channel}) is already used by another pin on this \
                         Pi model; use GPIO 12 with 13, or 18 with 19"
                    )));
                }
                let pwm = rppal::pwm::Pwm::with_frequency(
                    channel,
                    f64::from(hz),
                    0.0,
                    rppal::pwm::Polarity::Normal,
                    true,
                )
                .map_err(|e| {
                    fail(format!(
                        "{e} (is dtoverlay=pwm-2chan in /boot/firmware/config.txt?)"
                    ))
                })?;
                let mut pwm = pwm;
                // Our Drop disables it; rppal's would also unexport it.
                pwm.set_reset_on_drop(false);
                self.hard_pwm.insert(pin, pwm);
            }
            other => {
                let mut out = self
                    .gpio
                    .get(pin)
                    .map_err(|e| fail(e.to_string()))?
                    .into_output_low();
                out.set_reset_on_drop(false);
                self.outputs.insert(pin, out);
                if let Some((PwmKind::Software | PwmKind::Auto, hz)) = other {
                    self.soft_pwm.insert(pin, f64::from(hz));
                }
            }
        }
        Ok(())
    }

    fn hardware_pwm(&self, pins: &[u8]) -> Result<(), String> {
        let chip = self.pwm_chip();
        let dir = format!("/sys/class/pwm/pwmchip{chip}");
        let npwm: u32 = std::fs::read_to_string(format!("{dir}/npwm"))
            .ok()
            .and_then(|n| n.trim().parse().ok())
            .ok_or_else(|| {
                format!("no hardware PWM channels ({dir} is missing: no dtoverlay=pwm-2chan?)")
            })?;
        let mut used = Vec::new();
        for &pin in pins {
            let channel = self
                .hardware_channel(pin)
                .ok_or_else(|| format!("GPIO {pin} has no hardware PWM channel"))?;
            if used.contains(&channel) {
                return Err(format!(
                    "GPIO {pin} shares its hardware PWM channel ({channel}) with another speed pin"
                ));
            }
            if u32::from(channel as u8) >= npwm {
                return Err(format!("{dir} has {npwm} channels, not {channel}"));
            }
            used.push(channel);
        }
        Ok(())
    }

    fn write(&mut self, pin: u8, value: PinWrite) -> Result<(), MotorError> {
        let fail = |e: &dyn std::fmt::Display| MotorError::Write {
            pin,
            reason: e.to_string(),
        };
        if let Some(pwm) = self.hard_pwm.get(&pin) {
            let duty = match value {
                PinWrite::Low => 0.0,
                PinWrite::High => 1.0,
                PinWrite::Pwm(d) => d,
            };
            return pwm.set_duty_cycle(duty).map_err(|e| fail(&e));
        }
        let hz = self.soft_pwm.get(&pin).copied();
        let out = self
            .outputs
            .get_mut(&pin)
            .ok_or_else(|| MotorError::Write {
                pin,
                reason: "the pin was never claimed".into(),
            })?;
        match (value, hz) {
            (PinWrite::Pwm(duty), Some(hz)) if duty > 0.0 && duty < 1.0 => {
                out.set_pwm_frequency(hz, duty).map_err(|e| fail(&e))
            }
            (PinWrite::Pwm(duty), _) => {
                let _ = out.clear_pwm();
                if duty >= 1.0 {
                    out.set_high();
                } else {
                    out.set_low();
                }
                Ok(())
            }
            (PinWrite::High, _) => {
                let _ = out.clear_pwm();
                out.set_high();
                Ok(())
            }
            (PinWrite::Low, _) => {
                let _ = out.clear_pwm();
                out.set_low();
                Ok(())
            }
        }
    }
}

/// Every motor pin to its stopped level, and kept there: level pins first (at once), then
/// the software PWM pins (each waits for its PWM thread to end), then the hardware PWM
/// channels (duty 0, disabled).
impl Drop for RppalPins {
    fn drop(&mut self) {
        for (pin, out) in &mut self.outputs {
            if !self.soft_pwm.contains_key(pin) {
                out.set_low();
            }
        }
        for (pin, out) in &mut self.outputs {
            if self.soft_pwm.contains_key(pin) {
                let _ = out.clear_pwm();
                out.set_low();
            }
        }
        for (pin, pwm) in &self.hard_pwm {
            let duty = pwm.set_duty_cycle(0.0);
            if let Err(e) = duty.and_then(|()| pwm.disable()) {
                log::error!("could not disable the hardware PWM of GPIO {pin}: {e}");
            }
        }
    }
}
