// Number formatting for humans: thousands separators, compact units,
// milliseconds as ms or s, dollars with sensible precision.

const intFmt = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });

/** 1234567 -> "1,234,567" */
export function int(n) {
  return n == null || Number.isNaN(n) ? "–" : intFmt.format(n);
}

/** 1234567 -> "1.2M", 12345 -> "12.3k", 12 -> "12" */
export function compact(n) {
  if (n == null || Number.isNaN(n)) return "–";
  const a = Math.abs(n);
  // Drop trailing zeros after the decimal point only ("2.50" -> "2.5", "600" stays).
  const trim = (t) => (t.includes(".") ? t.replace(/0+$/, "").replace(/\.$/, "") : t);
  const f = (v, s) => trim(Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 10 ? v.toFixed(1) : v.toFixed(2)) + s;
  if (a >= 1e9) return f(n / 1e9, "G");
  if (a >= 1e6) return f(n / 1e6, "M");
  if (a >= 1e3) return f(n / 1e3, "k");
  if (a === 0) return "0";
  return a < 1 ? trim(n.toFixed(2)) : f(n, "");
}

/** 850 -> "850 ms", 1234 -> "1.23 s" */
export function ms(v) {
  if (v == null || Number.isNaN(v)) return "–";
  if (Math.abs(v) >= 1000) return (v / 1000).toFixed(Math.abs(v) >= 10000 ? 1 : 2) + " s";
  return (v === 0 ? "0" : v.toFixed(v >= 100 ? 0 : 1)) + " ms";
}

/** 0.01234 -> "$0.0123", 12.3 -> "$12.30", 12345 -> "$12.3k" */
export function usd(v) {
  if (v == null || Number.isNaN(v)) return "–";
  const a = Math.abs(v);
  if (a >= 10000) return "$" + compact(v);
  if (a >= 1) return "$" + v.toFixed(2);
  if (a === 0) return "$0";
  return "$" + v.toPrecision(3);
}

/** 0.0534 -> "5.3 %" */
export function pct(v) {
  return v == null || Number.isNaN(v) ? "–" : (v * 100).toFixed(v < 0.1 ? 1 : 0) + " %";
}

/** 900 -> "15m", 3600 -> "1h", 86400 -> "1d" */
export function dur(s) {
  if (s % 86400 === 0) return s / 86400 + "d";
  if (s % 3600 === 0) return s / 3600 + "h";
  if (s % 60 === 0) return s / 60 + "m";
  return s + "s";
}

/** Axis ticks in milliseconds: 8000 -> "8,000", 0.5 -> "0.5" */
export function msAxis(v) {
  if (v == null || Number.isNaN(v)) return "";
  return Math.abs(v) >= 10 ? int(v) : String(Math.round(v * 10) / 10);
}
