package io.lagoon.testing;

import io.r2dbc.spi.ColumnMetadata;
import io.r2dbc.spi.R2dbcType;
import io.r2dbc.spi.Result;
import io.r2dbc.spi.Row;
import io.r2dbc.spi.RowMetadata;
import io.r2dbc.spi.Type;
import java.util.List;
import java.util.Locale;
import java.util.NoSuchElementException;
import java.util.Objects;
import java.util.function.BiFunction;
import java.util.function.Function;
import java.util.function.Predicate;
import org.reactivestreams.Publisher;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;

/**
 * Result of one fake statement: {@code getRowsUpdated()} emits 0; rows are produced only for
 * {@code SELECT 1} (one row, one INTEGER column named {@code ?column?} whose value is 1).
 */
final class FakeResult implements Result {

    private static final String COLUMN = "?column?";

    private final String sql;
    private final boolean selectOne;
    private final Predicate<Segment> filter;

    FakeResult(String sql) {
        this(sql, isSelectOne(sql), segment -> true);
    }

    private FakeResult(String sql, boolean selectOne, Predicate<Segment> filter) {
        this.sql = sql;
        this.selectOne = selectOne;
        this.filter = filter;
    }

    static boolean isSelectOne(String sql) {
        String s = sql.strip();
        if (s.endsWith(";")) {
            s = s.substring(0, s.length() - 1).strip();
        }
        return s.toUpperCase(Locale.ROOT).matches("SELECT\\s+1");
    }

    @Override
    public Mono<Long> getRowsUpdated() {
        return Mono.just(0L);
    }

    @Override
    public <T> Flux<T> map(BiFunction<Row, RowMetadata, ? extends T> mappingFunction) {
        Objects.requireNonNull(mappingFunction, "mappingFunction");
        return Flux.fromIterable(segments())
                .ofType(RowSegment.class)
                .map(segment -> mappingFunction.apply(segment.row(), segment.row().getMetadata()));
    }

    @Override
    public Result filter(Predicate<Segment> predicate) {
        Objects.requireNonNull(predicate, "predicate");
        return new FakeResult(sql, selectOne, filter.and(predicate));
    }

    @Override
    public <T> Flux<T> flatMap(Function<Segment, ? extends Publisher<? extends T>> mappingFunction) {
        Objects.requireNonNull(mappingFunction, "mappingFunction");
        return Flux.fromIterable(segments()).concatMap(mappingFunction::apply);
    }

    private List<Segment> segments() {
        Segment segment = selectOne ? (RowSegment) () -> ONE_ROW : (UpdateCount) () -> 0L;
        return filter.test(segment) ? List.of(segment) : List.of();
    }

    @Override
    public String toString() {
        return "FakeResult{" + sql + "}";
    }

    // ---- the one row of SELECT 1 ----

    private static final ColumnMetadata COLUMN_METADATA = new ColumnMetadata() {
        @Override
        public Type getType() {
            return R2dbcType.INTEGER;
        }

        @Override
        public Class<?> getJavaType() {
            return Integer.class;
        }

        @Override
        public String getName() {
            return COLUMN;
        }
    };

    private static final RowMetadata ROW_METADATA = new RowMetadata() {
        @Override
        public ColumnMetadata getColumnMetadata(int index) {
            checkIndex(index);
            return COLUMN_METADATA;
        }

        @Override
        public ColumnMetadata getColumnMetadata(String name) {
            checkName(name);
            return COLUMN_METADATA;
        }

        @Override
        public List<? extends ColumnMetadata> getColumnMetadatas() {
            return List.of(COLUMN_METADATA);
        }

        @Override
        public boolean contains(String name) {
            return COLUMN.equalsIgnoreCase(name);
        }
    };

    private static final Row ONE_ROW = new Row() {
        @Override
        public RowMetadata getMetadata() {
            return ROW_METADATA;
        }

        @Override
        public <T> T get(int index, Class<T> type) {
            checkIndex(index);
            return convert(type);
        }

        @Override
        public <T> T get(String name, Class<T> type) {
            checkName(name);
            return convert(type);
        }
    };

    private static void checkIndex(int index) {
        if (index != 0) {
            throw new IndexOutOfBoundsException("column index " + index + " (fake SELECT 1 has one column)");
        }
    }

    private static void checkName(String name) {
        if (!COLUMN.equalsIgnoreCase(name)) {
            throw new NoSuchElementException("no column " + name + " (fake SELECT 1 has only " + COLUMN + ")");
        }
    }

    private static <T> T convert(Class<T> type) {
        Objects.requireNonNull(type, "type");
        Object value;
        if (type == Object.class || type == Integer.class || type == Number.class) {
            value = 1;
        } else if (type == Long.class) {
            value = 1L;
        } else if (type == String.class) {
            value = "1";
        } else {
            throw new IllegalArgumentException("cannot convert INTEGER to " + type.getName() + " (fake)");
        }
        return type.cast(value);
    }
}
