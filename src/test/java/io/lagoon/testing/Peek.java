package io.lagoon.testing;

import io.lagoon.ConnectionPool;
import io.r2dbc.spi.Connection;
import java.lang.reflect.Field;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import org.jspecify.annotations.Nullable;

/**
 * Reads the pool's machinery without going through its API: the physical connection behind a
 * pooled handle without {@code unwrap()} (unwrapping counts as reaching behind the pool, so the
 * connection is then reset or replaced on release, which tests that only want to know which
 * connection they were lent must not cause), the watch a lend keeps on its handle, and the pool's
 * reclaim of abandoned lends run on demand.
 */
public final class Peek {

  private Peek() {}

  /** The physical connection the handle was lent, whether or not the handle is still live. */
  public static Connection physical(Connection handle) {
    return (Connection) read(entry(handle), "connection");
  }

  /**
   * The watch the pool keeps on the current lend of the handle's connection (the phantom reference
   * that takes the connection back once an unclosed handle is collected), or null when the
   * connection is not lent: released, it must hold none.
   */
  public static @Nullable Object lendWatch(Connection handle) {
    return read(entry(handle), "lendWatch");
  }

  /**
   * Runs the pool's reclaim of abandoned lends now, as its housekeeping and an acquire that finds
   * no idle connection do: every connection whose handle the collector queued unclosed is closed
   * and its slot freed.
   */
  public static void reclaimAbandoned(ConnectionPool pool) {
    Object handles = read(read(pool, "core"), "abandoned");
    try {
      Method reclaim = handles.getClass().getDeclaredMethod("reclaim");
      reclaim.setAccessible(true);
      reclaim.invoke(handles);
    } catch (InvocationTargetException e) {
      throw new IllegalStateException("the pool's reclaim failed: " + e.getCause(), e.getCause());
    } catch (ReflectiveOperationException e) {
      throw new IllegalStateException("no reclaim() in " + handles.getClass().getName(), e);
    }
  }

  private static Object entry(Connection handle) {
    try {
      return read(handle, "entry");
    } catch (IllegalStateException e) {
      throw new IllegalStateException("not a pooled handle: " + handle.getClass().getName(), e);
    }
  }

  private static @Nullable Object read(Object owner, String field) {
    try {
      Field f = owner.getClass().getDeclaredField(field);
      f.setAccessible(true);
      return f.get(owner);
    } catch (ReflectiveOperationException e) {
      throw new IllegalStateException("no field " + field + " in " + owner.getClass().getName(), e);
    }
  }
}
