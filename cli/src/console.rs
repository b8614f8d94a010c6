//! The host side of the guest's serial console, as QEMU's `-nographic`: this process's stdin
//! feeds the guest's 16550 UART, and `Ctrl-A` escapes talk to btvisor itself.
//!
//! When stdin is a terminal it is switched to raw mode so every key (Ctrl-C included) reaches the
//! guest, and the old mode is put back on [`Drop`], on `std::process::exit` (an `atexit` hook) and
//! on SIGTERM/SIGHUP/SIGINT (handlers that restore and re-raise). A panic that aborts, SIGKILL or
//! SIGSTOP cannot be caught; `stty sane` repairs the terminal then.
//!
//! Bytes are passed through unchanged: a terminal in raw mode sends `\r` for Enter, which is what
//! a serial line carries, and a pipe's `\n` is what the guest's tty (ICRNL) expects from a file.

use std::cell::UnsafeCell;
use std::io::{self, Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU8, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Once;

/// The escape character, Ctrl-A, as QEMU's `-nographic` (`-echr` default).
pub const ESCAPE: u8 = 0x01;

/// What the console reader reports to the VMM run loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsoleEvent {
    /// Bytes for the guest's UART receive buffer.
    Input(Vec<u8>),
    /// The user typed Ctrl-A x: stop the VM. Nothing is read after it.
    Quit,
    /// Stdin is closed (or failed): the guest keeps running, it just gets no more input.
    Eof,
}

/// An escape sequence addressed to btvisor rather than to the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EscapeAction {
    /// Ctrl-A x.
    Quit,
    /// Ctrl-A h (or Ctrl-A ?): print [`help_text`] on stderr.
    Help,
}

/// The `Ctrl-A` escape state machine, free of I/O so it can be tested byte by byte.
///
/// - Ctrl-A x: [`EscapeAction::Quit`]; the bytes after it in the same feed are dropped.
/// - Ctrl-A Ctrl-A: one literal 0x01 for the guest.
/// - Ctrl-A h or Ctrl-A ?: [`EscapeAction::Help`].
/// - Ctrl-A then any other byte: both bytes go to the guest. QEMU drops unknown escapes; we
///   forward them so that nothing typed is silently lost (a guest program using Ctrl-A keeps
///   working for every key but the few above).
///
/// A Ctrl-A at the end of one feed waits for the next feed, so sequences split across reads work.
#[derive(Debug, Default)]
pub struct EscapeParser {
    pending: bool,
}

impl EscapeParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Splits `bytes` into what goes to the guest and the escape action, if any. When one feed
    /// holds several actions, Quit wins over Help; bytes before a Quit are still returned.
    pub fn feed(&mut self, bytes: &[u8]) -> (Vec<u8>, Option<EscapeAction>) {
        let mut out = Vec::with_capacity(bytes.len());
        let mut action = None;
        for &b in bytes {
            if self.pending {
                self.pending = false;
                match b {
                    ESCAPE => out.push(ESCAPE),
                    b'x' => return (out, Some(EscapeAction::Quit)),
                    b'h' | b'?' => action = Some(EscapeAction::Help),
                    other => out.extend_from_slice(&[ESCAPE, other]),
                }
            } else if b == ESCAPE {
                self.pending = true;
            } else {
                out.push(b);
            }
        }
        (out, action)
    }

    /// At end of input: a Ctrl-A still waiting for its second key is given to the guest.
    pub fn finish(&mut self) -> Vec<u8> {
        if std::mem::take(&mut self.pending) {
            vec![ESCAPE]
        } else {
            Vec::new()
        }
    }

    /// True when the last byte fed was an unfinished Ctrl-A.
    pub fn is_pending(&self) -> bool {
        self.pending
    }
}

/// The Ctrl-A help, with `\r\n` line ends when `crlf` (a raw-mode terminal).
pub fn help_text(crlf: bool) -> String {
    let nl = if crlf { "\r\n" } else { "\n" };
    [
        "C-a h    print this help",
        "C-a x    exit btvisor",
        "C-a C-a  send C-a to the guest",
    ]
    .iter()
    .map(|l| format!("{l}{nl}"))
    .collect()
}

/// How [`Console::open_with`] sets up the console.
#[derive(Debug, Clone)]
pub struct ConsoleConfig {
    /// Interpret Ctrl-A escapes (QEMU always does with `-nographic`, terminal or not).
    pub escapes: bool,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self { escapes: true }
    }
}

/// The guest console's input side: a thread reading the host input, polled with [`try_recv`].
///
/// The reader thread is detached: it may stay blocked in `read` after the `Console` is dropped,
/// until the process exits. Only one console should put the terminal in raw mode per process.
///
/// [`try_recv`]: Console::try_recv
pub struct Console {
    rx: Receiver<ConsoleEvent>,
    raw: bool,
}

impl Console {
    /// Reads this process's stdin, with escapes on; see [`Console::open_with`].
    pub fn open() -> io::Result<Console> {
        Self::open_with(&ConsoleConfig::default())
    }

    /// Reads this process's stdin. If stdin is a terminal it goes to raw mode until this
    /// `Console` is dropped, the process exits or is killed by SIGTERM/SIGHUP/SIGINT.
    pub fn open_with(config: &ConsoleConfig) -> io::Result<Console> {
        let fd = libc::STDIN_FILENO;
        // SAFETY: isatty only inspects the descriptor.
        if unsafe { libc::isatty(fd) } == 1 {
            // Hooks first: a signal right after the switch must already find them.
            install_restore_hooks();
        }
        let raw = enter_raw_mode(fd)?;
        match Self::spawn(io::stdin(), config.escapes, raw) {
            Ok(c) => Ok(c),
            Err(e) => {
                if raw {
                    restore_terminal();
                }
                Err(e)
            }
        }
    }

    /// Reads any byte source (a pipe, a file, a `Cursor` in tests); never touches the terminal.
    pub fn from_reader<R: Read + Send + 'static>(reader: R, escapes: bool) -> io::Result<Console> {
        Self::spawn(reader, escapes, false)
    }

    fn spawn<R: Read + Send + 'static>(reader: R, escapes: bool, raw: bool) -> io::Result<Console> {
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("console-input".into())
            .spawn(move || read_loop(reader, escapes, raw, tx))?;
        Ok(Console { rx, raw })
    }

    /// The next event, without blocking. `None` when nothing is waiting, and forever after
    /// [`ConsoleEvent::Eof`] or [`ConsoleEvent::Quit`] (the reader has stopped).
    pub fn try_recv(&self) -> Option<ConsoleEvent> {
        self.rx.try_recv().ok()
    }

    /// True when this console put the terminal in raw mode.
    pub fn is_raw(&self) -> bool {
        self.raw
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        if self.raw {
            restore_terminal();
        }
    }
}

fn read_loop<R: Read>(mut reader: R, escapes: bool, crlf: bool, tx: Sender<ConsoleEvent>) {
    let mut parser = EscapeParser::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                // EIO when the terminal hangs up, for instance: as good as end of input.
                tracing::debug!(target: "btvisor::console", "console input stopped: {e}");
                break;
            }
        };
        let (bytes, action) = if escapes {
            parser.feed(&buf[..n])
        } else {
            (buf[..n].to_vec(), None)
        };
        if !bytes.is_empty() && tx.send(ConsoleEvent::Input(bytes)).is_err() {
            return; // the console is gone
        }
        match action {
            Some(EscapeAction::Quit) => {
                let _ = tx.send(ConsoleEvent::Quit);
                return;
            }
            Some(EscapeAction::Help) => {
                let _ = io::stderr().write_all(help_text(crlf).as_bytes());
            }
            None => {}
        }
    }
    let rest = parser.finish();
    if !rest.is_empty() {
        let _ = tx.send(ConsoleEvent::Input(rest));
    }
    let _ = tx.send(ConsoleEvent::Eof);
}

// --- Raw mode -------------------------------------------------------------------------------
//
// The saved termios is written once (NOT_SAVED -> WRITING -> SAVED, never back) and then only
// read, so restore_terminal needs no lock and may run concurrently with itself, in any thread or
// in a signal handler: it uses atomics and tcsetattr, both async-signal-safe (POSIX.1 lists
// tcsetattr among the async-signal-safe functions).

const NOT_SAVED: u8 = 0;
const WRITING: u8 = 1;
const SAVED: u8 = 2;

static SAVE_STATE: AtomicU8 = AtomicU8::new(NOT_SAVED);
static SAVED_FD: AtomicI32 = AtomicI32::new(-1);
/// True while the terminal is (or may be) in our raw mode.
static RAW_ACTIVE: AtomicBool = AtomicBool::new(false);

struct SavedTermios(UnsafeCell<MaybeUninit<libc::termios>>);

// SAFETY: the cell is written only by the one thread that moved SAVE_STATE from NOT_SAVED to
// WRITING, and read only after SAVE_STATE is SAVED (Release/Acquire), after which it never changes.
unsafe impl Sync for SavedTermios {}

static SAVED_TERMIOS: SavedTermios = SavedTermios(UnsafeCell::new(MaybeUninit::uninit()));

fn saved_termios() -> Option<(RawFd, libc::termios)> {
    if SAVE_STATE.load(Ordering::Acquire) != SAVED {
        return None;
    }
    // SAFETY: SAVED means the cell was initialized and is immutable from now on.
    let t = unsafe { (*SAVED_TERMIOS.0.get()).assume_init() };
    Some((SAVED_FD.load(Ordering::Relaxed), t))
}

/// The mode QEMU's stdio chardev uses: cfmakeraw(3) minus clearing OPOST (so the guest's `\n`
/// still renders through ONLCR), and with ISIG off so Ctrl-C, Ctrl-Z and Ctrl-\ go to the guest.
fn raw_termios(orig: &libc::termios) -> libc::termios {
    let mut t = *orig;
    t.c_iflag &= !(libc::IGNBRK
        | libc::BRKINT
        | libc::PARMRK
        | libc::ISTRIP
        | libc::INLCR
        | libc::IGNCR
        | libc::ICRNL
        | libc::IXON);
    t.c_oflag |= libc::OPOST;
    t.c_lflag &= !(libc::ECHO | libc::ECHONL | libc::ICANON | libc::ISIG | libc::IEXTEN);
    t.c_cflag &= !(libc::CSIZE | libc::PARENB);
    t.c_cflag |= libc::CS8;
    t.c_cc[libc::VMIN] = 1;
    t.c_cc[libc::VTIME] = 0;
    t
}

/// Puts the terminal `fd` in raw mode, saving its mode for [`restore_terminal`]. `Ok(false)` when
/// `fd` is not a terminal. The first terminal saved is the only one this process can switch.
fn enter_raw_mode(fd: RawFd) -> io::Result<bool> {
    // SAFETY: isatty only inspects the descriptor.
    if unsafe { libc::isatty(fd) } != 1 {
        return Ok(false);
    }
    let mut cur = MaybeUninit::<libc::termios>::uninit();
    // SAFETY: tcgetattr fills the termios it is given when it returns 0.
    if unsafe { libc::tcgetattr(fd, cur.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: tcgetattr returned 0 above.
    let cur = unsafe { cur.assume_init() };
    if SAVE_STATE
        .compare_exchange(NOT_SAVED, WRITING, Ordering::Acquire, Ordering::Acquire)
        .is_ok()
    {
        // SAFETY: winning the exchange makes this thread the cell's only writer, and no reader
        // looks at it before SAVED is published below.
        unsafe { (*SAVED_TERMIOS.0.get()).write(cur) };
        SAVED_FD.store(fd, Ordering::Relaxed);
        SAVE_STATE.store(SAVED, Ordering::Release);
    }
    let orig = match saved_termios() {
        Some((saved_fd, t)) if saved_fd == fd => t,
        _ => {
            return Err(io::Error::other(
                "console: another terminal was already put in raw mode",
            ))
        }
    };
    RAW_ACTIVE.store(true, Ordering::SeqCst);
    let raw = raw_termios(&orig);
    // SAFETY: raw is a valid termios derived from the terminal's own.
    if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &raw) } != 0 {
        let e = io::Error::last_os_error();
        RAW_ACTIVE.store(false, Ordering::SeqCst);
        return Err(e);
    }
    Ok(true)
}

/// Puts the terminal back in the mode it had before [`Console::open`] switched it to raw mode.
/// Does nothing if it was never switched or is already restored; safe to call repeatedly, from
/// any thread and from a signal handler.
pub fn restore_terminal() {
    if !RAW_ACTIVE.load(Ordering::SeqCst) {
        return;
    }
    if let Some((fd, t)) = saved_termios() {
        // SAFETY: t is the termios tcgetattr returned for fd. Concurrent callers all write the
        // same value, so racing here is harmless.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &t) };
    }
    RAW_ACTIVE.store(false, Ordering::SeqCst);
}

extern "C" fn restore_at_exit() {
    restore_terminal();
}

/// Restores the terminal, then lets the signal do what it would have done: SA_RESETHAND put
/// the default action back on entry, and the re-raised signal, blocked while this handler runs,
/// is delivered as it returns.
extern "C" fn restore_and_reraise(sig: libc::c_int) {
    restore_terminal();
    // SAFETY: raise is async-signal-safe.
    unsafe { libc::raise(sig) };
}

/// Registers `atexit` (so `std::process::exit` restores) and SIGTERM/SIGHUP/SIGINT handlers,
/// once. A signal whose disposition is not the default (ignored under `nohup`, or handled by
/// someone else) is left alone.
fn install_restore_hooks() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: restore_at_exit is an `extern "C" fn()` that lives as long as the program.
        if unsafe { libc::atexit(restore_at_exit) } != 0 {
            tracing::warn!(target: "btvisor::console", "atexit failed: the terminal may stay raw after exit");
        }
        for sig in [libc::SIGTERM, libc::SIGHUP, libc::SIGINT] {
            // SAFETY: sigaction reads and writes only the structs passed; a zeroed sigaction is
            // a valid value (empty mask, no flags) that the calls below complete.
            unsafe {
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(sig, std::ptr::null(), &mut old) != 0
                    || old.sa_sigaction != libc::SIG_DFL
                {
                    continue;
                }
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = restore_and_reraise as extern "C" fn(libc::c_int) as usize;
                sa.sa_flags = libc::SA_RESETHAND | libc::SA_RESTART;
                libc::sigemptyset(&mut sa.sa_mask);
                libc::sigaction(sig, &sa, std::ptr::null_mut());
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;
    use std::time::{Duration, Instant};

    /// Every event until the reader stops (the channel disconnects), or a 10 s timeout.
    fn drain(c: &Console) -> Vec<ConsoleEvent> {
        let mut events = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match c.rx.recv_timeout(Duration::from_millis(50)) {
                Ok(e) => events.push(e),
                Err(mpsc::RecvTimeoutError::Disconnected) => return events,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    assert!(Instant::now() < deadline, "reader stuck; got {events:?}");
                }
            }
        }
    }

    /// Input events merged (a pipe may deliver in several reads), the rest kept in order.
    fn merged(events: Vec<ConsoleEvent>) -> Vec<ConsoleEvent> {
        let mut out: Vec<ConsoleEvent> = Vec::new();
        for e in events {
            match (out.last_mut(), e) {
                (Some(ConsoleEvent::Input(a)), ConsoleEvent::Input(b)) => a.extend(b),
                (_, e) => out.push(e),
            }
        }
        out
    }

    #[test]
    fn plain_bytes_pass_through_unchanged() {
        let mut p = EscapeParser::new();
        assert_eq!(p.feed(b"ls -l\r\n\x03"), (b"ls -l\r\n\x03".to_vec(), None));
        assert!(!p.is_pending());
    }

    #[test]
    fn ctrl_a_x_quits_and_drops_the_rest() {
        let mut p = EscapeParser::new();
        assert_eq!(
            p.feed(b"ab\x01xcd"),
            (b"ab".to_vec(), Some(EscapeAction::Quit))
        );
    }

    #[test]
    fn ctrl_a_ctrl_a_sends_one_ctrl_a() {
        let mut p = EscapeParser::new();
        assert_eq!(p.feed(b"a\x01\x01b"), (b"a\x01b".to_vec(), None));
        assert_eq!(p.feed(b"\x01\x01\x01\x01"), (vec![1, 1], None));
    }

    #[test]
    fn escape_split_across_feeds() {
        let mut p = EscapeParser::new();
        assert_eq!(p.feed(b"ab\x01"), (b"ab".to_vec(), None));
        assert!(p.is_pending());
        assert_eq!(p.feed(b"x"), (vec![], Some(EscapeAction::Quit)));

        let mut p = EscapeParser::new();
        assert_eq!(p.feed(b"\x01"), (vec![], None));
        assert_eq!(p.feed(b"\x01z"), (b"\x01z".to_vec(), None));
        assert!(!p.is_pending());
    }

    #[test]
    fn ctrl_a_at_end_of_input_goes_to_the_guest() {
        let mut p = EscapeParser::new();
        assert_eq!(p.feed(b"q\x01"), (b"q".to_vec(), None));
        assert_eq!(p.finish(), vec![ESCAPE]);
        assert_eq!(p.finish(), Vec::<u8>::new());
    }

    #[test]
    fn help_escape() {
        let mut p = EscapeParser::new();
        assert_eq!(
            p.feed(b"a\x01hb"),
            (b"ab".to_vec(), Some(EscapeAction::Help))
        );
        assert_eq!(p.feed(b"\x01?"), (vec![], Some(EscapeAction::Help)));
        // Quit wins over a help earlier in the same feed.
        assert_eq!(p.feed(b"\x01h\x01x"), (vec![], Some(EscapeAction::Quit)));
        assert_eq!(help_text(true).matches("\r\n").count(), 3);
        assert!(!help_text(false).contains('\r'));
        assert!(help_text(false).contains("C-a x"));
    }

    #[test]
    fn unknown_escape_forwards_both_bytes() {
        let mut p = EscapeParser::new();
        assert_eq!(p.feed(b"\x01c\x01X"), (b"\x01c\x01X".to_vec(), None));
    }

    #[test]
    fn reader_over_a_pipe_sends_input_then_eof() {
        let (r, mut w) = io::pipe().expect("pipe");
        let c = Console::from_reader(r, true).expect("spawn");
        assert!(!c.is_raw());
        w.write_all(b"echo hi\n").expect("write");
        w.write_all(b"\x01\x01uname\n").expect("write");
        drop(w);
        assert_eq!(
            merged(drain(&c)),
            vec![
                ConsoleEvent::Input(b"echo hi\n\x01uname\n".to_vec()),
                ConsoleEvent::Eof
            ]
        );
        assert_eq!(c.try_recv(), None);
    }

    #[test]
    fn reader_quits_on_ctrl_a_x() {
        let c =
            Console::from_reader(Cursor::new(b"ls\n\x01xignored".to_vec()), true).expect("spawn");
        assert_eq!(
            drain(&c),
            vec![ConsoleEvent::Input(b"ls\n".to_vec()), ConsoleEvent::Quit]
        );
    }

    #[test]
    fn reader_without_escapes_passes_ctrl_a() {
        let c = Console::from_reader(Cursor::new(b"\x01x\x01".to_vec()), false).expect("spawn");
        assert_eq!(
            merged(drain(&c)),
            vec![
                ConsoleEvent::Input(b"\x01x\x01".to_vec()),
                ConsoleEvent::Eof
            ]
        );
    }

    #[test]
    fn reader_flushes_a_dangling_ctrl_a_at_eof() {
        let c = Console::from_reader(Cursor::new(b"a\x01".to_vec()), true).expect("spawn");
        assert_eq!(
            merged(drain(&c)),
            vec![ConsoleEvent::Input(b"a\x01".to_vec()), ConsoleEvent::Eof]
        );
    }

    #[test]
    fn try_recv_polls_without_blocking() {
        let (r, mut w) = io::pipe().expect("pipe");
        let c = Console::from_reader(r, true).expect("spawn");
        assert_eq!(c.try_recv(), None);
        w.write_all(b"k").expect("write");
        let deadline = Instant::now() + Duration::from_secs(10);
        let event = loop {
            if let Some(e) = c.try_recv() {
                break e;
            }
            assert!(Instant::now() < deadline, "no event");
            std::thread::sleep(Duration::from_millis(2));
        };
        assert_eq!(event, ConsoleEvent::Input(b"k".to_vec()));
    }

    #[test]
    fn raw_termios_flags() {
        // SAFETY: an all-zero termios is a valid value.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        t.c_iflag = libc::ICRNL | libc::IXON | libc::BRKINT;
        t.c_oflag = libc::OPOST | libc::ONLCR;
        t.c_lflag = libc::ECHO | libc::ICANON | libc::ISIG | libc::IEXTEN | libc::ECHOE;
        t.c_cflag = libc::CS7 | libc::PARENB | libc::CREAD;
        let r = raw_termios(&t);
        assert_eq!(r.c_iflag & (libc::ICRNL | libc::IXON | libc::BRKINT), 0);
        assert_eq!(r.c_oflag, libc::OPOST | libc::ONLCR);
        assert_eq!(
            r.c_lflag & (libc::ECHO | libc::ICANON | libc::ISIG | libc::IEXTEN),
            0
        );
        assert_eq!(r.c_cflag & libc::CSIZE, libc::CS8);
        assert_eq!(r.c_cflag & libc::PARENB, 0);
        assert_ne!(r.c_cflag & libc::CREAD, 0);
        assert_eq!((r.c_cc[libc::VMIN], r.c_cc[libc::VTIME]), (1, 0));
    }

    #[test]
    fn not_a_terminal_is_left_alone() {
        use std::os::fd::AsRawFd;
        let (r, _w) = io::pipe().expect("pipe");
        assert!(!enter_raw_mode(r.as_raw_fd()).expect("enter_raw_mode"));
    }

    fn lflag(fd: RawFd) -> libc::tcflag_t {
        let mut t = MaybeUninit::<libc::termios>::uninit();
        // SAFETY: tcgetattr fills t when it returns 0, which is asserted before reading t.
        unsafe {
            assert_eq!(libc::tcgetattr(fd, t.as_mut_ptr()), 0);
            t.assume_init().c_lflag
        }
    }

    /// The only test that touches the process-wide saved mode: enter and restore on a pty slave,
    /// then, in a forked child, enter again and die of SIGTERM, which must restore it too.
    #[test]
    fn raw_mode_on_a_pty_is_restored_by_drop_path_and_by_sigterm() {
        let (mut master, mut slave) = (-1, -1);
        // SAFETY: openpty writes the two descriptors; null name/termios/winsize are allowed.
        let rc = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(rc, 0, "openpty: {}", io::Error::last_os_error());
        let cooked = lflag(slave);
        assert_ne!(cooked & libc::ECHO, 0);
        assert_ne!(cooked & libc::ICANON, 0);

        assert!(enter_raw_mode(slave).expect("enter_raw_mode"));
        let raw = lflag(slave);
        assert_eq!(raw & (libc::ECHO | libc::ICANON | libc::ISIG), 0);
        restore_terminal();
        assert_eq!(lflag(slave), cooked);
        restore_terminal(); // idempotent
        assert_eq!(lflag(slave), cooked);

        // SAFETY: the child only calls enter_raw_mode (tcgetattr/tcsetattr and atomics), the
        // hook installation (Once, atexit, sigaction) and raise/_exit before it dies.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", io::Error::last_os_error());
        if pid == 0 {
            install_restore_hooks();
            let code = match enter_raw_mode(slave) {
                Ok(true) => {
                    // SAFETY: raise and _exit are async-signal-safe and end the child.
                    unsafe {
                        libc::raise(libc::SIGTERM);
                        libc::_exit(10)
                    }
                }
                _ => 11,
            };
            // SAFETY: _exit ends the child without running the parent's atexit or destructors.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waitpid on our own child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(
            libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGTERM,
            "child status {status:#x}"
        );
        assert_eq!(lflag(slave), cooked, "SIGTERM left the pty raw");
        // SAFETY: closing the descriptors openpty gave us.
        unsafe {
            libc::close(slave);
            libc::close(master);
        }
    }
}
