package twin.neo4j;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.time.Duration;
import java.util.Comparator;
import java.util.concurrent.CountDownLatch;
import java.util.stream.Stream;

import org.neo4j.configuration.GraphDatabaseSettings;
import org.neo4j.configuration.connectors.BoltConnector;
import org.neo4j.configuration.connectors.ConnectorPortRegister;
import org.neo4j.configuration.connectors.ConnectorType;
import org.neo4j.configuration.connectors.HttpConnector;
import org.neo4j.configuration.helpers.SocketAddress;
import org.neo4j.dbms.api.DatabaseManagementService;
import org.neo4j.dbms.api.DatabaseManagementServiceBuilder;
import org.neo4j.graphdb.GraphDatabaseService;
import org.neo4j.io.ByteUnit;
import org.neo4j.kernel.internal.GraphDatabaseAPI;

/**
 * Starts a throw-away Neo4j community DBMS with Bolt on 127.0.0.1 (a free port unless one is
 * given), auth disabled, data in a fresh temporary directory that is deleted on stop.
 *
 * <p>Once the database answers, prints {@code NEO4J_BOLT_URI=bolt://127.0.0.1:PORT} on stdout and,
 * with {@code --uri-file F}, writes the URI to F (atomically, so a reader never sees half of it).
 * Stops cleanly on SIGTERM/SIGINT and, with {@code --watch-stdin}, when standard input closes
 * (so a parent process that dies takes the server with it).
 *
 * <p>Usage: {@code Launcher [--port N] [--uri-file F] [--data-dir D] [--watch-stdin] [--pagecache 256m]}
 */
public final class Launcher {

    private Launcher() {}

    public static void main(String[] args) throws Exception {
        int port = 0;
        Path uriFile = null;
        Path dataDir = null;
        boolean watchStdin = false;
        long pagecache = ByteUnit.mebiBytes(256);
        for (int i = 0; i < args.length; i++) {
            switch (args[i]) {
                case "--port" -> port = Integer.parseInt(args[++i]);
                case "--uri-file" -> uriFile = Path.of(args[++i]);
                case "--data-dir" -> dataDir = Path.of(args[++i]);
                case "--watch-stdin" -> watchStdin = true;
                case "--pagecache" -> pagecache = ByteUnit.parse(args[++i]);
                default -> {
                    System.err.println("neo4j-launcher: unknown argument " + args[i]);
                    System.exit(2);
                }
            }
        }
        boolean ownDir = dataDir == null;
        Path home = ownDir ? Files.createTempDirectory("twin-neo4j-") : dataDir;

        DatabaseManagementService dbms = new DatabaseManagementServiceBuilder(home)
                .setConfig(BoltConnector.enabled, true)
                .setConfig(BoltConnector.listen_address, new SocketAddress("127.0.0.1", port))
                .setConfig(BoltConnector.advertised_address, new SocketAddress("127.0.0.1", port))
                .setConfig(BoltConnector.encryption_level, BoltConnector.EncryptionLevel.DISABLED)
                .setConfig(HttpConnector.enabled, false)
                .setConfig(GraphDatabaseSettings.auth_enabled, false)
                .setConfig(GraphDatabaseSettings.pagecache_memory, pagecache)
                .setConfig(GraphDatabaseSettings.allow_file_urls, false)
                .setConfig(GraphDatabaseSettings.transaction_timeout, Duration.ofMinutes(10))
                .build();

        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                dbms.shutdown();
            } finally {
                if (ownDir) {
                    deleteTree(home);
                }
                stopped.countDown();
            }
        }, "neo4j-launcher-shutdown"));

        GraphDatabaseService db = dbms.database(GraphDatabaseSettings.DEFAULT_DATABASE_NAME);
        if (!db.isAvailable(Duration.ofMinutes(5).toMillis())) {
            System.err.println("neo4j-launcher: database did not become available");
            System.exit(1);
        }
        db.executeTransactionally("RETURN 1");
        ConnectorPortRegister ports = ((GraphDatabaseAPI) db).getDependencyResolver()
                .resolveDependency(ConnectorPortRegister.class);
        String uri = "bolt://127.0.0.1:" + ports.getLocalAddress(ConnectorType.BOLT).getPort();

        if (uriFile != null) {
            Path tmp = uriFile.resolveSibling(uriFile.getFileName() + ".tmp");
            Files.writeString(tmp, uri + "\n", StandardCharsets.UTF_8);
            Files.move(tmp, uriFile, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
        }
        System.out.println("NEO4J_BOLT_URI=" + uri);
        System.out.flush();

        if (watchStdin) {
            InputStream in = System.in;
            byte[] buf = new byte[256];
            while (in.read(buf) >= 0) {
                // drain until EOF: the parent closed our stdin (or died)
            }
            System.exit(0);
        }
        stopped.await();
    }

    private static void deleteTree(Path root) {
        try (Stream<Path> walk = Files.walk(root)) {
            walk.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
        } catch (IOException e) {
            System.err.println("neo4j-launcher: could not delete " + root + ": " + e.getMessage());
        }
    }
}
