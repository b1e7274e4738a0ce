package store

import (
	"strings"
	"time"
	"unsafe"
)

// A line that writes its own time as RFC 3339 in UTC
// ("2026-12-03T07:14:05.123456Z", with 0 to 9 digits of a second) stores
// it as a stamp: its offset in the line, its digits and its distance from
// the entry's time — 0 when the pipeline took the entry's time from the
// line, as Loki's and Alloy's timestamp stages do and as applications that
// push their own lines do. In the stored line the text is blanked, its
// length kept ("0000-00-00T00:00:00.000000Z"), and the block's reader
// writes it back in place: no line moves, nothing is allocated. Digits
// that change with every line are what a compressor cannot find again; the
// blank and the stamp's fields repeat.

// stampFinder finds stamps in the lines of a block, in time order: its
// writer keeps the text of the current entry's day ("2006-01-02T"), which a
// stamp of the line's own day starts with.
type stampFinder struct {
	w stampWriter
}

const nanosPerDay = 24 * int64(time.Hour)

// maxStampNanos bounds the entries whose stamps are looked for, well inside
// the nanosecond times an int64 holds (to 2262-04-11): a stamp is of its
// entry's day, so it is within a day of the entry's time.
var maxStampNanos = time.Date(2262, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()

// find returns the stamp in line of an entry at t: its offset, its length,
// its digits and its time minus t; ok false when the line has none of t's
// day that writes back exactly.
func (f *stampFinder) find(line string, t int64) (off, n int, digits byte, delta int64, ok bool) {
	if t < 0 || t >= maxStampNanos || len(line) < stampLen(0) {
		return 0, 0, 0, 0, false
	}
	day := f.w.setDay(t)
	date := unsafe.String(&f.w.date[0], len(f.w.date))
	off = strings.Index(line, date)
	if off < 0 {
		return 0, 0, 0, 0, false
	}
	s := line[off+len(date):] // HH:MM:SS, then .digits, then Z
	if len(s) < len("15:04:05Z") || s[2] != ':' || s[5] != ':' {
		return 0, 0, 0, 0, false
	}
	h, ok1 := twoDigits(s[0:2])
	m, ok2 := twoDigits(s[3:5])
	sec, ok3 := twoDigits(s[6:8])
	// In range, the fields write back as they are read: the date is the
	// day's own text, and digits are written as many as were read.
	if !ok1 || !ok2 || !ok3 || h > 23 || m > 59 || sec > 59 {
		return 0, 0, 0, 0, false
	}
	frac, i := int64(0), 8
	if s[i] == '.' {
		for i++; i < len(s) && i < 9+9 && s[i] >= '0' && s[i] <= '9'; i++ {
			frac = frac*10 + int64(s[i]-'0')
		}
		if digits = byte(i - 9); digits == 0 {
			return 0, 0, 0, 0, false
		}
	}
	if i >= len(s) || s[i] != 'Z' {
		return 0, 0, 0, 0, false
	}
	frac *= int64(powersOfTen[9-digits])
	at := day*nanosPerDay + int64((h*60+m)*60+sec)*int64(time.Second) + frac
	return off, len(date) + i + 1, digits, at - t, true
}

func twoDigits(s string) (int, bool) {
	if s[0] < '0' || s[0] > '9' || s[1] < '0' || s[1] > '9' {
		return 0, false
	}
	return int(s[0]-'0')*10 + int(s[1]-'0'), true
}

// stampAt is the time of a stamp read from a block, or false when the
// entry's time and the stamp's distance from it cannot be one that find
// returned.
func stampAt(t, delta int64) (int64, bool) {
	if t < 0 || t >= maxStampNanos || delta <= -nanosPerDay || delta >= nanosPerDay || t+delta < 0 {
		return 0, false
	}
	return t + delta, true
}

// stampWriter writes stamps, keeping the text of the last one's day and
// second: the stamps of a block are mostly of one day, many of one second.
type stampWriter struct {
	day, sec int64 // of date and clock
	known    bool  // day and date are set (and sec, clock, when secKnown)
	secKnown bool
	date     [11]byte // "2006-01-02T"
	clock    [8]byte  // "15:04:05"
}

// setDay makes date the text of t's day, which it returns (days since 1970).
func (w *stampWriter) setDay(t int64) int64 {
	day := t / nanosPerDay
	if !w.known || day != w.day {
		w.day, w.known, w.secKnown = day, true, false
		y, mo, d := time.Unix(day*(nanosPerDay/int64(time.Second)), 0).UTC().Date()
		putDigits(w.date[0:4], y)
		w.date[4] = '-'
		putDigits(w.date[5:7], int(mo))
		w.date[7] = '-'
		putDigits(w.date[8:10], d)
		w.date[10] = 'T'
	}
	return day
}

// append appends t (nanoseconds since 1970, in [0, maxStampNanos)) as
// RFC 3339 in UTC with digits (0-9) digits of a second.
func (w *stampWriter) append(b []byte, t int64, digits byte) []byte {
	if sec := t / int64(time.Second); !w.secKnown || sec != w.sec {
		day := w.setDay(t)
		w.sec, w.secKnown = sec, true
		c := int(sec - day*(nanosPerDay/int64(time.Second)))
		putDigits(w.clock[0:2], c/3600)
		w.clock[2] = ':'
		putDigits(w.clock[3:5], c/60%60)
		w.clock[5] = ':'
		putDigits(w.clock[6:8], c%60)
	}
	b = append(b, w.date[:]...)
	b = append(b, w.clock[:]...)
	if digits > 0 {
		ns := int(uint64(t%int64(time.Second)) / powersOfTen[9-digits])
		b = append(b, '.')
		n := len(b)
		b = append(b, "000000000"[:digits]...)
		putDigits(b[n:], ns)
	}
	return append(b, 'Z')
}

// putDigits writes v into b in exactly len(b) decimal digits (v <
// 10^len(b)), two at a time.
func putDigits(b []byte, v int) {
	i := len(b)
	for ; i >= 2; i -= 2 {
		d := v % 100 * 2
		b[i-2], b[i-1] = digitPairs[d], digitPairs[d+1]
		v /= 100
	}
	if i == 1 {
		b[0] = byte('0' + v%10)
	}
}

const digitPairs = "00010203040506070809101112131415161718192021222324252627282930313233343536373839404142434445464748495051525354555657585960616263646566676869707172737475767778798081828384858687888990919293949596979899"

// blankStamp is what a stamp with digits digits is stored as.
func blankStamp(digits byte) string { return blankStamps[digits] }

var blankStamps = func() (b [10]string) {
	b[0] = "0000-00-00T00:00:00Z"
	for d := 1; d < 10; d++ {
		b[d] = "0000-00-00T00:00:00." + strings.Repeat("0", d) + "Z"
	}
	return b
}()

// stampLen is the length of a stamp with digits digits.
func stampLen(digits byte) int {
	if digits == 0 {
		return len("2006-01-02T15:04:05Z")
	}
	return len("2006-01-02T15:04:05.Z") + int(digits)
}
