package io.lagoon.internal;

import java.util.Locale;

/**
 * What a borrower's SQL text may leave behind on the connection, read from the text alone: an
 * open transaction ({@link PooledConnection#TX}) or changed session state ({@link
 * PooledConnection#SESSION}). Every statement also sets {@link PooledConnection#RAN_SQL}.
 *
 * <p>The text is first stripped of string literals (standard, escape and dollar-quoted), quoted
 * identifiers and comments, so neither a keyword nor a {@code ;} inside them counts. Then the rule
 * is conservative: a statement counts as session-neutral only when it starts with one of the
 * plain data or transaction-control keywords below, names none of the functions or objects that
 * change the session from inside a query (for example {@code set_config}, session advisory locks,
 * {@code pg_settings}, sequence functions, MariaDB's {@code GET_LOCK} and {@code LAST_INSERT_ID(n)}),
 * assigns no user variable ({@code :=}) and, for a query, writes nothing {@code INTO} (a table or
 * a variable). Everything else ({@code SET}, {@code LISTEN}, {@code CREATE TEMP TABLE},
 * {@code PREPARE}, {@code DECLARE}, {@code DO}, {@code CALL}...) counts as a session change. What
 * it cannot see: a function called from a query that changes the session itself; the {@code
 * ALWAYS} session-reset mode covers that.
 */
final class SqlEffects {

  private static final String[] NEUTRAL = {
    "select", "insert", "update", "delete", "with", "values", "table", "merge", "commit",
    "rollback", "end", "abort", "savepoint", "release", "show", "explain"
  };
  private static final String[] TRANSACTION_START = {"begin", "start"};
  private static final String[] SESSION_NAMES = {
    "set_config", "advisory_lock", "dblink", "pg_settings", "nextval", "setval", "lastval",
    "currval", "get_lock", "release_lock", "release_all_locks"
  };

  private SqlEffects() {}

  /**
   * The dirty bits that running {@code sql} may set. Whether a backslash escapes a quote depends
   * on the server's settings, so the text is read both ways and the effects of both count.
   */
  static int of(String sql) {
    return PooledConnection.RAN_SQL | ofText(strip(sql, true)) | ofText(strip(sql, false));
  }

  private static int ofText(String stripped) {
    String text = stripped.toLowerCase(Locale.ROOT);
    int effects = 0;
    int from = 0;
    int n = text.length();
    while (from <= n) {
      int end = text.indexOf(';', from);
      if (end < 0) {
        end = n;
      }
      effects |= ofOne(text.substring(from, end));
      from = end + 1;
    }
    return effects;
  }

  private static int ofOne(String statement) {
    String s = statement.strip();
    while (s.startsWith("(")) {
      s = s.substring(1).strip();
    }
    if (s.isEmpty()) {
      return 0;
    }
    String first = firstWord(s);
    for (String k : TRANSACTION_START) {
      if (first.equals(k)) {
        return PooledConnection.TX | PooledConnection.TX_SQL;
      }
    }
    for (String k : NEUTRAL) {
      if (first.equals(k)) {
        return changesSession(s) ? PooledConnection.SESSION : 0;
      }
    }
    return PooledConnection.SESSION;
  }

  private static boolean changesSession(String s) {
    for (String f : SESSION_NAMES) {
      if (s.contains(f)) {
        return true;
      }
    }
    if (s.contains(":=")) {
      return true; // a user variable assigned inside a query (MariaDB)
    }
    int id = s.indexOf("last_insert_id");
    if (id >= 0) {
      int open = s.indexOf('(', id);
      int close = open < 0 ? -1 : s.indexOf(')', open);
      if (open >= 0 && close > open && !s.substring(open + 1, close).isBlank()) {
        return true; // LAST_INSERT_ID(n) sets the value the next borrower would read
      }
    }
    return writesInto(s);
  }

  private static String firstWord(String s) {
    int i = 0;
    while (i < s.length() && Character.isLetter(s.charAt(i))) {
      i++;
    }
    return s.substring(0, i);
  }

  /** An INTO that is not INSERT INTO or MERGE INTO: SELECT ... INTO a table or a variable. */
  private static boolean writesInto(String s) {
    String previous = "";
    int i = 0;
    int n = s.length();
    while (i < n) {
      if (!Character.isLetterOrDigit(s.charAt(i)) && s.charAt(i) != '_') {
        i++;
        continue;
      }
      int start = i;
      while (i < n && (Character.isLetterOrDigit(s.charAt(i)) || s.charAt(i) == '_')) {
        i++;
      }
      String word = s.substring(start, i);
      if (word.equals("into") && !previous.equals("insert") && !previous.equals("merge")
          && !previous.equals("ignore")) {
        return true;
      }
      previous = word;
    }
    return false;
  }

  /**
   * The text with every string literal, quoted identifier and comment replaced by a space, so
   * that only SQL words and punctuation remain.
   */
  static String strip(String sql, boolean backslashEscapes) {
    StringBuilder out = new StringBuilder(sql.length());
    int n = sql.length();
    int i = 0;
    while (i < n) {
      char c = sql.charAt(i);
      if (c == '\'' || c == '"' || c == '`') {
        i = skipQuoted(sql, i, c, backslashEscapes);
        out.append(' ');
      } else if (c == '-' && i + 1 < n && sql.charAt(i + 1) == '-') {
        int eol = sql.indexOf('\n', i);
        i = eol < 0 ? n : eol;
        out.append(' ');
      } else if (c == '#' && !isPostgresOperatorContext(sql, i)) {
        int eol = sql.indexOf('\n', i); // MariaDB comment
        i = eol < 0 ? n : eol;
        out.append(' ');
      } else if (c == '/' && i + 1 < n && sql.charAt(i + 1) == '*') {
        int end = sql.indexOf("*/", i + 2);
        i = end < 0 ? n : end + 2;
        out.append(' ');
      } else if (c == '$') {
        int tagEnd = sql.indexOf('$', i + 1);
        String tag = tagEnd < 0 ? null : sql.substring(i, tagEnd + 1);
        if (tag != null && tag.chars().skip(1).limit(tag.length() - 2L)
            .allMatch(ch -> Character.isLetterOrDigit(ch) || ch == '_')
            && (i == 0 || !Character.isLetterOrDigit(sql.charAt(i - 1)))) {
          int close = sql.indexOf(tag, tagEnd + 1);
          i = close < 0 ? n : close + tag.length();
          out.append(' ');
        } else {
          out.append(c);
          i++;
        }
      } else {
        out.append(c);
        i++;
      }
    }
    return out.toString();
  }

  /** PostgreSQL uses # as an operator (bitwise xor); treat it as a comment only at a line start. */
  private static boolean isPostgresOperatorContext(String sql, int i) {
    for (int j = i - 1; j >= 0; j--) {
      char p = sql.charAt(j);
      if (p == '\n') {
        return false;
      }
      if (!Character.isWhitespace(p)) {
        return true;
      }
    }
    return false;
  }

  /** Index after the literal that opens at {@code i}; a doubled quote (or a backslash) escapes. */
  private static int skipQuoted(String sql, int i, char quote, boolean backslashEscapes) {
    int n = sql.length();
    int j = i + 1;
    while (j < n) {
      char c = sql.charAt(j);
      if (backslashEscapes && c == '\\' && quote == '\'' && j + 1 < n) {
        j += 2; // E'' strings, MariaDB's default
        continue;
      }
      if (c == quote) {
        if (j + 1 < n && sql.charAt(j + 1) == quote) {
          j += 2;
          continue;
        }
        return j + 1;
      }
      j++;
    }
    return n;
  }
}
