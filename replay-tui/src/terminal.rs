//! The terminal loop: raw mode and the alternate screen, restored on every
//! exit path and on panic.

use std::io::{self, Stdout};
use std::sync::Once;
use std::time::{Duration, Instant};

use crossterm::event::{self, Event, KeyEventKind};
use crossterm::execute;
use crossterm::terminal::{
    Clear, ClearType, EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;

use crate::ReplayError;
use crate::app::{App, ReplayOptions};
use crate::render::render;
use crate::source::Source;

/// How long the loop waits for a key before ticking playback.
const TICK: Duration = Duration::from_millis(50);

/// Leaves the alternate screen, shows the cursor, disables raw mode. Safe to
/// call more than once.
fn restore() {
    let _ = disable_raw_mode();
    let _ = execute!(io::stdout(), LeaveAlternateScreen, crossterm::cursor::Show);
}

/// Restores the terminal when dropped (normal return, `?` error, unwinding).
struct Guard;

impl Drop for Guard {
    fn drop(&mut self) {
        restore();
    }
}

/// Installs (once) a panic hook that restores the terminal before the
/// previous hook prints the panic.
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
    });
}

/// Runs the replayer full-screen until `q`.
pub fn run(source: Box<dyn Source>, opts: ReplayOptions) -> Result<(), ReplayError> {
    let follow = opts.follow;
    let refresh_every = opts.refresh_every;
    let mut app = App::new(source, opts)?;
    install_panic_hook();
    enable_raw_mode()?;
    let _guard = Guard;
    execute!(
        io::stdout(),
        EnterAlternateScreen,
        Clear(ClearType::All),
        crossterm::cursor::Hide
    )?;
    let mut terminal = Terminal::new(CrosstermBackend::new(io::stdout()))?;
    event_loop(&mut terminal, &mut app, follow, refresh_every)
}

fn event_loop(
    terminal: &mut Terminal<CrosstermBackend<Stdout>>,
    app: &mut App,
    follow: bool,
    refresh_every: Duration,
) -> Result<(), ReplayError> {
    let mut last_tick = Instant::now();
    let mut last_refresh = Instant::now();
    let mut dirty = true;
    loop {
        if dirty {
            terminal.draw(|frame| render(app, frame))?;
            dirty = false;
        }
        if event::poll(TICK)? {
            match event::read()? {
                Event::Key(key) if key.kind != KeyEventKind::Release => {
                    app.handle_key(key);
                    dirty = true;
                }
                Event::Resize(_, _) => {
                    terminal.autoresize()?;
                    dirty = true;
                }
                _ => {}
            }
        }
        if app.should_quit() {
            return Ok(());
        }
        let now = Instant::now();
        dirty |= app.tick(now - last_tick);
        last_tick = now;
        if follow && now - last_refresh >= refresh_every {
            last_refresh = now;
            dirty |= app.refresh();
        }
    }
}
