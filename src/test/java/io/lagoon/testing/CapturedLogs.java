package io.lagoon.testing;

import java.io.ByteArrayOutputStream;
import java.io.OutputStream;
import java.io.PrintStream;
import java.lang.reflect.Field;
import java.nio.charset.StandardCharsets;
import java.util.HashMap;
import java.util.Map;
import java.util.concurrent.ConcurrentMap;
import org.slf4j.ILoggerFactory;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Captures what is logged while it is open. The tests log through SLF4J's simple binding, which
 * Reactor's {@code Loggers} (Lagoon, r2dbc-postgresql, Reactor Netty) and Netty all use, and which
 * writes to {@code System.err} as it is at each call: so the capture replaces {@code System.err}
 * (and {@code System.out}, for anything printed directly) and, when asked, lowers every logger to
 * TRACE, the existing ones and those created meanwhile. The simple binding has no API for levels,
 * so this reaches its fields by reflection, and fails loudly if they are not there.
 *
 * <p>{@link #close()} restores the streams and the levels. Open one at a time, on a test thread.
 */
public final class CapturedLogs implements AutoCloseable {

  private static final int TRACE = 0; // SimpleLogger.LOG_LEVEL_TRACE

  private final ByteArrayOutputStream captured = new ByteArrayOutputStream();
  private final PrintStream originalErr = System.err;
  private final PrintStream originalOut = System.out;
  private final Map<Object, Integer> levels = new HashMap<>();
  private final boolean everyLevel;
  private Object config;
  private int defaultLevel;

  private CapturedLogs(boolean everyLevel) {
    this.everyLevel = everyLevel;
  }

  /**
   * Starts capturing; with {@code everyLevel}, loggers are lowered to TRACE until {@link
   * #close()}, else they log at their configured levels (INFO by default).
   */
  public static CapturedLogs start(boolean everyLevel) {
    CapturedLogs logs = new CapturedLogs(everyLevel);
    PrintStream sink = new PrintStream(new Synchronized(logs.captured), true, StandardCharsets.UTF_8);
    System.setErr(sink);
    System.setOut(sink);
    if (everyLevel) {
      logs.lowerLevels();
    }
    return logs;
  }

  /** Everything captured so far. */
  public String text() {
    synchronized (captured) {
      return captured.toString(StandardCharsets.UTF_8);
    }
  }

  @Override
  public void close() {
    System.setErr(originalErr);
    System.setOut(originalOut);
    if (everyLevel) {
      restoreLevels();
    }
  }

  // ---------------------------------------------------------------- levels, by reflection

  private void lowerLevels() {
    try {
      Class<?> simpleLogger = Class.forName("org.slf4j.simple.SimpleLogger");
      Field configField = simpleLogger.getDeclaredField("CONFIG_PARAMS");
      configField.setAccessible(true);
      LoggerFactory.getLogger(CapturedLogs.class); // initialises the binding and its config
      config = configField.get(null);
      Field defaultField = config.getClass().getDeclaredField("defaultLogLevel");
      defaultField.setAccessible(true);
      defaultLevel = defaultField.getInt(config);
      defaultField.setInt(config, TRACE);
      Field level = simpleLogger.getDeclaredField("currentLogLevel");
      level.setAccessible(true);
      for (Logger logger : loggers().values()) {
        if (simpleLogger.isInstance(logger)) {
          levels.put(logger, level.getInt(logger));
          level.setInt(logger, TRACE);
        }
      }
    } catch (ReflectiveOperationException | RuntimeException e) {
      close();
      throw new IllegalStateException("CapturedLogs: cannot lower the levels of SLF4J's simple"
          + " binding (is slf4j-simple 2.x the binding on the test class path?): " + e, e);
    }
  }

  private void restoreLevels() {
    try {
      Class<?> simpleLogger = Class.forName("org.slf4j.simple.SimpleLogger");
      Field level = simpleLogger.getDeclaredField("currentLogLevel");
      level.setAccessible(true);
      Field defaultField = config.getClass().getDeclaredField("defaultLogLevel");
      defaultField.setAccessible(true);
      defaultField.setInt(config, defaultLevel);
      for (Logger logger : loggers().values()) {
        if (simpleLogger.isInstance(logger)) {
          Integer before = levels.get(logger);
          level.setInt(logger, before != null ? before : defaultLevel); // created meanwhile
        }
      }
    } catch (ReflectiveOperationException | RuntimeException e) {
      throw new IllegalStateException("CapturedLogs: cannot restore log levels: " + e, e);
    }
  }

  @SuppressWarnings("unchecked")
  private static ConcurrentMap<String, Logger> loggers() throws ReflectiveOperationException {
    ILoggerFactory factory = LoggerFactory.getILoggerFactory();
    Field map = factory.getClass().getDeclaredField("loggerMap");
    map.setAccessible(true);
    return (ConcurrentMap<String, Logger>) map.get(factory);
  }

  /** Writes from many threads, read from the test thread. */
  private static final class Synchronized extends OutputStream {
    private final ByteArrayOutputStream target;

    Synchronized(ByteArrayOutputStream target) {
      this.target = target;
    }

    @Override
    public void write(int b) {
      synchronized (target) {
        target.write(b);
      }
    }

    @Override
    public void write(byte[] b, int off, int len) {
      synchronized (target) {
        target.write(b, off, len);
      }
    }
  }
}
