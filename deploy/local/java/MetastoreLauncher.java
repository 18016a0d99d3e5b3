// Owns: serving a Hive 2.3 metastore (the classes inside the pyspark 4.x jars) on
// 127.0.0.1 only. Hive's own HiveMetaStore.main binds every interface; this launcher builds
// the same handler (HMSHandler wrapped by newRetryingHMSHandler) and serves it with the
// same Thrift stack (TThreadPoolServer, plain socket transport, TBinaryProtocol,
// TSetIpAddressProcessor), on a socket bound to the loopback address.
//
// Invariant: the port accepts connections only once the handler is initialised (Derby
// schema created), so "port open" means "ready".
//
// Usage: java -cp CONF:CLASSES:PYSPARK_JARS/* MetastoreLauncher PORT
// (CONF holds hive-site.xml: Derby URL, warehouse dir, fs.defaultFS.)
// Compiled by deploy/local/hadoop.sh install.

import java.net.InetSocketAddress;

import org.apache.hadoop.hive.conf.HiveConf;
import org.apache.hadoop.hive.metastore.HiveMetaStore;
import org.apache.hadoop.hive.metastore.IHMSHandler;
import org.apache.hadoop.hive.metastore.TSetIpAddressProcessor;
import org.apache.thrift.protocol.TBinaryProtocol;
import org.apache.thrift.server.TServer;
import org.apache.thrift.server.TThreadPoolServer;
import org.apache.thrift.transport.TServerSocket;
import org.apache.thrift.transport.TTransportFactory;

public final class MetastoreLauncher {
    private MetastoreLauncher() {}

    public static void main(String[] args) throws Exception {
        if (args.length != 1) {
            System.err.println("usage: MetastoreLauncher PORT");
            System.exit(2);
        }
        int port = Integer.parseInt(args[0]);
        HiveConf conf = new HiveConf(HiveMetaStore.HMSHandler.class);
        HiveMetaStore.HMSHandler base =
                new HiveMetaStore.HMSHandler("binlake metastore", conf, false);
        // Initialises the handler (creates the Derby schema) before anything listens.
        IHMSHandler handler = HiveMetaStore.newRetryingHMSHandler(base, conf);
        TServerSocket socket = new TServerSocket(new InetSocketAddress("127.0.0.1", port));
        TThreadPoolServer.Args serverArgs = new TThreadPoolServer.Args(socket)
                .processor(new TSetIpAddressProcessor<>(handler))
                .transportFactory(new TTransportFactory())
                .protocolFactory(new TBinaryProtocol.Factory())
                .minWorkerThreads(4)
                .maxWorkerThreads(64);
        TServer server = new TThreadPoolServer(serverArgs);
        System.out.println("metastore listening on 127.0.0.1:" + port);
        System.out.flush();
        server.serve();
    }
}
