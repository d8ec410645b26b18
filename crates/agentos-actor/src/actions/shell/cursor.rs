//! The actor's answer to terminal cursor queries.
//!
//! The guest's line editor (brush) asks for the cursor position (`ESC[6n`,
//! a "device status report") at every prompt and gives up on the shell when
//! no answer comes. A terminal emulator normally answers; the actor must do
//! it itself because a shell runs whether or not any client is attached.
//! [`CursorTracker`] follows the shell's output with a small VT parser that
//! knows only what moves the cursor, so its answers (`ESC[<row>;<col>R`)
//! match what a client rendering the same output sees. Its state is carried
//! from chunk to chunk, so a query split across output chunks is found too.

/// Terminal size used when the client gave none (the PTY default).
pub const DEFAULT_COLS: u16 = 80;
pub const DEFAULT_ROWS: u16 = 24;

/// Longest CSI parameter string kept; longer ones are garbage, not queries.
const MAX_PARAMS: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Ground,
    Escape,
    Csi,
    /// An operating-system command (title etc.), ended by BEL or `ESC \`.
    Osc,
    OscEscape,
}

/// Tracks the cursor of a `cols` x `rows` terminal through its output.
#[derive(Debug, Clone)]
pub struct CursorTracker {
    cols: u16,
    rows: u16,
    /// 0-based. `col == cols` means "wrap pending": the last column was
    /// written and the next printable character starts a new line.
    row: u16,
    col: u16,
    saved: (u16, u16),
    state: State,
    params: Vec<u8>,
    /// How far the printed text matches an echoed report `^[[<row>;<col>R`.
    echo: u8,
    echoed: usize,
}

impl CursorTracker {
    pub fn new(cols: u16, rows: u16) -> Self {
        Self {
            cols: cols.max(1),
            rows: rows.max(1),
            row: 0,
            col: 0,
            saved: (0, 0),
            state: State::Ground,
            params: Vec::new(),
            echo: 0,
            echoed: 0,
        }
    }

    /// The terminal was resized: keep the cursor inside it.
    pub fn resize(&mut self, cols: u16, rows: u16) {
        self.cols = cols.max(1);
        self.rows = rows.max(1);
        self.row = self.row.min(self.rows - 1);
        self.col = self.col.min(self.cols);
    }

    /// 1-based `(row, col)` as a terminal reports it.
    pub fn position(&self) -> (u16, u16) {
        (self.row + 1, self.col.min(self.cols - 1) + 1)
    }

    /// Reports that came back as printed text since the last call: they
    /// reached the terminal while it echoed input (a command was running,
    /// not the line editor), so the line editor will not read them.
    pub fn take_echoed(&mut self) -> usize {
        std::mem::take(&mut self.echoed)
    }

    /// Follows `output` and returns one cursor position report for every
    /// query in it, in order.
    pub fn feed(&mut self, output: &[u8]) -> Vec<Vec<u8>> {
        let mut reports = Vec::new();
        for &byte in output {
            match self.state {
                State::Ground => self.ground(byte),
                State::Escape => self.escape(byte),
                State::Csi => {
                    if let Some(report) = self.csi(byte) {
                        reports.push(report);
                    }
                }
                State::Osc => match byte {
                    0x07 => self.state = State::Ground,
                    0x1b => self.state = State::OscEscape,
                    _ => {}
                },
                // `ESC \` ends the command; anything else after ESC is taken
                // as a new escape sequence.
                State::OscEscape => {
                    if byte == b'\\' {
                        self.state = State::Ground;
                    } else {
                        self.state = State::Escape;
                        self.escape(byte);
                    }
                }
            }
        }
        reports
    }

    fn ground(&mut self, byte: u8) {
        match byte {
            0x1b => self.state = State::Escape,
            b'\r' => self.col = 0,
            b'\n' | 0x0b | 0x0c => self.line_feed(),
            0x08 => self.col = self.col.min(self.cols - 1).saturating_sub(1),
            b'\t' => self.col = ((self.col / 8 + 1) * 8).min(self.cols - 1),
            // Other controls and UTF-8 continuation bytes take no cell.
            0x00..=0x1f | 0x7f | 0x80..=0xbf => {}
            _ => {
                self.match_echo(byte);
                self.print();
            }
        }
    }

    /// Advances the `^[[<digits>;<digits>R` matcher by one printed byte.
    fn match_echo(&mut self, byte: u8) {
        // States: 0 start, 1 `^`, 2 `^[`, 3 `^[[`, 4 row digits, 5 `;`, 6 col digits.
        self.echo = match (self.echo, byte) {
            (_, b'^') => 1,
            (1, b'[') => 2,
            (2, b'[') => 3,
            (3 | 4, b'0'..=b'9') => 4,
            (4, b';') => 5,
            (5 | 6, b'0'..=b'9') => 6,
            (6, b'R') => {
                self.echoed += 1;
                0
            }
            _ => 0,
        };
    }

    fn print(&mut self) {
        if self.col >= self.cols {
            self.col = 0;
            self.line_feed();
        }
        self.col += 1;
    }

    fn line_feed(&mut self) {
        // At the bottom the screen scrolls and the cursor stays.
        self.row = (self.row + 1).min(self.rows - 1);
    }

    fn escape(&mut self, byte: u8) {
        self.state = State::Ground;
        match byte {
            b'[' => {
                self.params.clear();
                self.state = State::Csi;
            }
            b']' => self.state = State::Osc,
            b'7' => self.saved = (self.row, self.col),
            b'8' => (self.row, self.col) = self.saved,
            b'c' => *self = Self::new(self.cols, self.rows),
            b'D' => self.line_feed(),
            b'E' => {
                self.col = 0;
                self.line_feed();
            }
            b'M' => self.row = self.row.saturating_sub(1),
            0x1b => self.state = State::Escape,
            _ => {}
        }
    }

    fn csi(&mut self, byte: u8) -> Option<Vec<u8>> {
        match byte {
            // Parameter and intermediate bytes.
            0x20..=0x3f => {
                if self.params.len() < MAX_PARAMS {
                    self.params.push(byte);
                }
                None
            }
            0x40..=0x7e => {
                self.state = State::Ground;
                self.csi_final(byte)
            }
            0x1b => {
                self.state = State::Escape;
                None
            }
            // C0 controls inside a sequence act as usual.
            _ => {
                self.ground(byte);
                if self.state == State::Ground {
                    self.state = State::Csi;
                }
                None
            }
        }
    }

    fn csi_final(&mut self, final_byte: u8) -> Option<Vec<u8>> {
        // Private sequences (`ESC[?25h` ...) do not move the cursor.
        if self.params.first().is_some_and(|b| matches!(b, b'<'..=b'?')) {
            return None;
        }
        let params: Vec<u16> = self
            .params
            .split(|b| *b == b';')
            .map(|p| std::str::from_utf8(p).ok().and_then(|s| s.parse().ok()).unwrap_or(0))
            .collect();
        let arg = |i: usize| params.get(i).copied().unwrap_or(0);
        // Movement counts and positions treat a missing or 0 parameter as 1.
        let n = |i: usize| arg(i).max(1);
        let last_col = self.cols - 1;
        let last_row = self.rows - 1;
        match final_byte {
            b'n' if self.params == b"6" => {
                let (row, col) = self.position();
                return Some(format!("\x1b[{row};{col}R").into_bytes());
            }
            b'A' => self.row = self.row.saturating_sub(n(0)),
            b'B' | b'e' => self.row = self.row.saturating_add(n(0)).min(last_row),
            b'C' | b'a' => self.col = self.col.min(last_col).saturating_add(n(0)).min(last_col),
            b'D' => self.col = self.col.min(last_col).saturating_sub(n(0)),
            b'E' => {
                self.row = self.row.saturating_add(n(0)).min(last_row);
                self.col = 0;
            }
            b'F' => {
                self.row = self.row.saturating_sub(n(0));
                self.col = 0;
            }
            b'G' | b'`' => self.col = (n(0) - 1).min(last_col),
            b'd' => self.row = (n(0) - 1).min(last_row),
            b'H' | b'f' => {
                self.row = (n(0) - 1).min(last_row);
                self.col = (n(1) - 1).min(last_col);
            }
            b's' => self.saved = (self.row, self.col),
            b'u' => (self.row, self.col) = self.saved,
            // Setting the scroll region homes the cursor.
            b'r' => (self.row, self.col) = (0, 0),
            _ => {}
        }
        None
    }
}

impl Default for CursorTracker {
    fn default() -> Self {
        Self::new(DEFAULT_COLS, DEFAULT_ROWS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reports(t: &mut CursorTracker, chunks: &[&[u8]]) -> Vec<String> {
        chunks
            .iter()
            .flat_map(|c| t.feed(c))
            .map(|r| String::from_utf8(r).unwrap())
            .collect()
    }

    #[test]
    fn answers_a_query_with_the_position_after_the_prompt() {
        let mut t = CursorTracker::default();
        assert_eq!(reports(&mut t, &[b"\x1b[6n"]), vec!["\x1b[1;1R"]);
        assert_eq!(reports(&mut t, &[b"hello\r\n$ \x1b[6n"]), vec!["\x1b[2;3R"]);
    }

    #[test]
    fn finds_a_query_split_across_chunks_at_every_byte() {
        let stream: &[u8] = b"ab\x1b[6ncd\x1b[6n";
        for cut in 0..=stream.len() {
            let mut t = CursorTracker::default();
            let got = reports(&mut t, &[&stream[..cut], &stream[cut..]]);
            assert_eq!(got, vec!["\x1b[1;3R", "\x1b[1;5R"], "cut at {cut}");
        }
        // One byte per chunk.
        let mut t = CursorTracker::default();
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(reports(&mut t, &bytes), vec!["\x1b[1;3R", "\x1b[1;5R"]);
    }

    #[test]
    fn answers_every_query_in_order() {
        let mut t = CursorTracker::default();
        let got = reports(&mut t, &[b"\x1b[6n\x1b[6nx\r\n\x1b[6n"]);
        assert_eq!(got, vec!["\x1b[1;1R", "\x1b[1;1R", "\x1b[2;1R"]);
    }

    #[test]
    fn other_status_reports_and_private_sequences_are_not_queries() {
        let mut t = CursorTracker::default();
        assert!(t.feed(b"\x1b[5n\x1b[?6n\x1b[16n\x1b[?2004h\x1b[?25l").is_empty());
        assert_eq!(t.position(), (1, 1));
    }

    #[test]
    fn follows_cursor_movement() {
        let mut t = CursorTracker::new(80, 24);
        t.feed(b"\x1b[10;20H");
        assert_eq!(t.position(), (10, 20));
        t.feed(b"\x1b[3A\x1b[5C");
        assert_eq!(t.position(), (7, 25));
        t.feed(b"\x1b[2B\x1b[30D");
        assert_eq!(t.position(), (9, 1));
        t.feed(b"\x1b[12G\x1b[4d");
        assert_eq!(t.position(), (4, 12));
        t.feed(b"\x1b7\x1b[H");
        assert_eq!(t.position(), (1, 1));
        t.feed(b"\x1b8");
        assert_eq!(t.position(), (4, 12));
        t.feed(b"\x08\x08\t");
        assert_eq!(t.position(), (4, 17));
        t.feed(b"\x1b[99;99H");
        assert_eq!(t.position(), (24, 80));
    }

    #[test]
    fn wraps_at_the_last_column_and_scrolls_at_the_bottom() {
        let mut t = CursorTracker::new(10, 3);
        t.feed(b"0123456789");
        // Wrap pending: the cursor shows on the last column.
        assert_eq!(t.position(), (1, 10));
        t.feed(b"a");
        assert_eq!(t.position(), (2, 2));
        t.feed(b"\r\n\r\n\r\n\r\n");
        assert_eq!(t.position(), (3, 1));
    }

    #[test]
    fn titles_colours_and_utf8_take_no_cells() {
        let mut t = CursorTracker::default();
        t.feed("\x1b]0;title \x1b[6n\x07\x1b[1;32mé€\x1b[0m".as_bytes());
        assert_eq!(t.position(), (1, 3));
        // String terminator form of the title command.
        assert!(t.feed(b"\x1b]2;t\x1b\\x\x1b[6n").len() == 1);
        assert_eq!(t.position(), (1, 4));
    }

    #[test]
    fn counts_reports_echoed_back_as_text() {
        let mut t = CursorTracker::default();
        t.feed(b"^[[3;1");
        t.feed(b"1R\r\nout\r\n^[[12;1R ^[[x;1R ^[3;1R");
        assert_eq!(t.take_echoed(), 2);
        assert_eq!(t.take_echoed(), 0);
        // A real report from the terminal is not an echo.
        t.feed(b"\x1b[3;11R");
        assert_eq!(t.take_echoed(), 0);
    }

    #[test]
    fn resize_keeps_the_cursor_inside() {
        let mut t = CursorTracker::new(80, 24);
        t.feed(b"\x1b[20;70H");
        t.resize(40, 10);
        assert_eq!(t.position(), (10, 40));
        assert_eq!(t.feed(b"\x1b[6n"), vec![b"\x1b[10;40R".to_vec()]);
    }
}
