package io.lagoon.internal;

import java.util.Locale;

/**
 * What a borrower's SQL text may leave behind on the connection, read from the text alone: an
 * open transaction ({@link PooledConnection#TX}) or changed session state ({@link
 * PooledConnection#SESSION}).
 *
 * <p>The rule is conservative: a statement counts as session-neutral only when it starts with one
 * of the plain data or transaction-control keywords below (or MySQL's {@code SIGNAL}, which only
 * raises an error) and names none of the functions that change the session from inside a query
 * ({@code set_config}, session-level advisory locks) and,
 * for a {@code SELECT}, has no {@code INTO} (which creates a table). Everything else ({@code SET},
 * {@code LISTEN}, {@code CREATE TEMP TABLE}, {@code PREPARE}, {@code DECLARE}, {@code DO},
 * {@code CALL}, a leading comment...) counts as a session change, and so does every part of text
 * holding several statements. What it cannot see: a function called from a query that changes
 * the session itself; the {@code ALWAYS} session-reset mode covers that.
 */
final class SqlEffects {

  private static final String[] NEUTRAL = {
    "select", "insert", "update", "delete", "with", "values", "table", "merge", "commit",
    "rollback", "end", "abort", "savepoint", "release", "show", "explain", "signal"
  };
  private static final String[] TRANSACTION_START = {"begin", "start"};
  private static final String[] SESSION_FUNCTIONS = {"set_config", "advisory_lock", "dblink"};

  private SqlEffects() {}

  /** The dirty bits that running {@code sql} may set. */
  static int of(String sql) {
    int effects = 0;
    int from = 0;
    int n = sql.length();
    while (from <= n) {
      int end = sql.indexOf(';', from);
      if (end < 0) {
        end = n;
      }
      effects |= ofOne(sql.substring(from, end));
      from = end + 1;
    }
    return effects;
  }

  private static int ofOne(String statement) {
    String s = statement.strip().toLowerCase(Locale.ROOT);
    if (s.isEmpty()) {
      return 0;
    }
    String first = firstWord(s);
    for (String k : TRANSACTION_START) {
      if (first.equals(k)) {
        return PooledConnection.TX;
      }
    }
    for (String k : NEUTRAL) {
      if (first.equals(k)) {
        for (String f : SESSION_FUNCTIONS) {
          if (s.contains(f)) {
            return PooledConnection.SESSION;
          }
        }
        if ((first.equals("select") || first.equals("with")) && hasWord(s, "into")
            && !hasWord(s, "insert")) {
          return PooledConnection.SESSION;
        }
        return 0;
      }
    }
    return PooledConnection.SESSION;
  }

  private static String firstWord(String s) {
    int i = 0;
    while (i < s.length() && Character.isLetter(s.charAt(i))) {
      i++;
    }
    return s.substring(0, i);
  }

  private static boolean hasWord(String s, String word) {
    for (int i = s.indexOf(word); i >= 0; i = s.indexOf(word, i + 1)) {
      boolean startOk = i == 0 || !Character.isLetterOrDigit(s.charAt(i - 1));
      int e = i + word.length();
      boolean endOk = e == s.length() || !Character.isLetterOrDigit(s.charAt(e));
      if (startOk && endOk) {
        return true;
      }
    }
    return false;
  }
}
