// curata-spool-scp: the gateway's DICOM front end, built on dcmtk's association and DIMSE layers.
//
// It answers C-ECHO and C-STORE and writes every received data set, bit for bit in the negotiated
// transfer syntax with its Part-10 meta header, into a spool folder that the gateway's
// de-identification workers drain (curata/collect/net/spool.py). C-STORE success is answered only
// after the file is durable: written, fsynced, renamed into spool/ready, and that folder fsynced.
// Any failure on the way answers 0xA700 (out of resources), so the sender keeps the instance.
//
// One process per association (fork after accept), as dcmtk's storescp does with --fork: the network
// layer runs at C speed on every core, and a hostile or broken association cannot harm the others.
// The parent binds the listening socket to the configured address itself (dcmtk 3.6.7 binds every
// interface), checks the peer address against the allowed networks and the connection limits before
// anything is read, and hands the connected socket to the child through dcmExternalSocketHandle.
//
// Settings come from a file (--config), one "key value" per line, written by the gateway:
//   ae CURATA            our AE title            check_called 1     refuse other called AE titles
//   max_pdu 1048576      request_timeout 10      dimse_timeout 120  max_request_bytes 65536
//   max_connections 128  max_connections_per_host 32                max_object_bytes 2147483648
//   max_associations 16  max_associations_per_peer 8  (the per-peer limit counts per host address)
//   allow AE [host]      a calling AE title allowed (optionally from one address); none = any
//   net 10.0.0.0/24      an address allowed to connect at all; none = any
//   ts UID               a transfer syntax we accept (the sender's order wins among these)
//   sop UID              a storage SOP class we accept (Verification is always accepted)
// Events go to stdout, one tab-separated line each, written with a single write(2):
//   listening PORT | stored FILE CALLING_AE SOP_INSTANCE_UID | refused REASON AE HOST |
//   dropped REASON HOST | failed REASON
// No patient data is ever written to stdout or stderr: only AE titles, addresses and UIDs.

#include "dcmtk/config/osconfig.h"
#include "dcmtk/dcmdata/dctk.h"
#include "dcmtk/dcmnet/assoc.h"
#include "dcmtk/dcmnet/dimse.h"
#include "dcmtk/dcmnet/dul.h"
#include "dcmtk/oflog/oflog.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace {

struct Net {
    int family = AF_INET;
    unsigned char addr[16] = {0};
    int bits = 0;
};

struct Config {
    std::string ae = "CURATA";
    bool check_called = true;
    long max_pdu = 1048576;
    int request_timeout = 10;
    int dimse_timeout = 120;
    long max_request_bytes = 65536;
    int max_connections = 128;
    int max_connections_per_host = 32;
    int max_associations = 16;
    int max_associations_per_peer = 8;
    long long max_object_bytes = 2147483648LL;
    std::vector<std::pair<std::string, std::string>> allow;  // (AE, host or "")
    std::vector<Net> nets;
    std::vector<std::string> ts;
    std::set<std::string> sop;
};

Config cfg;
std::string spool_tmp, spool_ready;
volatile sig_atomic_t stopping = 0;

void emit(const std::string& line) {
    std::string out = line + "\n";
    const char* p = out.data();
    size_t left = out.size();
    while (left > 0) {
        ssize_t n = write(STDOUT_FILENO, p, left);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return;
        p += n;
        left -= static_cast<size_t>(n);
    }
}

// AE titles and addresses come from the network: keep them printable and free of our separators.
std::string clean(const std::string& s) {
    std::string out;
    for (char c : s) out += (c >= 0x20 && c < 0x7f && c != '\t') ? c : '?';
    size_t a = out.find_first_not_of(' '), b = out.find_last_not_of(' ');
    return a == std::string::npos ? std::string() : out.substr(a, b - a + 1);
}

// dcmtk's words for why a receive failed, without its numbers (a length, an offset): the protocol
// layer's texts name no value of the data set, and what is left is its letters alone
std::string condition_words(const OFCondition& cond) {
    std::string out;
    for (const char* p = cond.text(); p && *p && out.size() < 80; ++p) {
        char c = *p;
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == ' ' || c == ':') out += c;
    }
    while (!out.empty() && (out.back() == ' ' || out.back() == ':')) out.pop_back();
    return out.empty() ? "a DIMSE error" : out;
}

bool parse_net(const std::string& text, Net& net) {
    std::string host = text;
    int bits = -1;
    size_t slash = text.find('/');
    if (slash != std::string::npos) {
        host = text.substr(0, slash);
        bits = std::atoi(text.c_str() + slash + 1);
    }
    if (inet_pton(AF_INET, host.c_str(), net.addr) == 1) {
        net.family = AF_INET;
        net.bits = bits < 0 ? 32 : bits;
        return net.bits <= 32;
    }
    if (inet_pton(AF_INET6, host.c_str(), net.addr) == 1) {
        net.family = AF_INET6;
        net.bits = bits < 0 ? 128 : bits;
        return net.bits <= 128;
    }
    return false;
}

bool in_net(const Net& net, int family, const unsigned char* addr) {
    if (family != net.family) return false;
    int full = net.bits / 8, rest = net.bits % 8;
    if (std::memcmp(addr, net.addr, static_cast<size_t>(full)) != 0) return false;
    if (rest == 0) return true;
    unsigned char mask = static_cast<unsigned char>(0xff << (8 - rest));
    return (addr[full] & mask) == (net.addr[full] & mask);
}

bool load_config(const char* path) {
    std::ifstream in(path);
    if (!in) return false;
    std::string line;
    while (std::getline(in, line)) {
        std::istringstream fields(line);
        std::string key, value, extra;
        fields >> key;
        std::getline(fields >> std::ws, value);
        if (key == "ae") cfg.ae = value;
        else if (key == "check_called") cfg.check_called = value == "1";
        else if (key == "max_pdu") cfg.max_pdu = std::atol(value.c_str());
        else if (key == "request_timeout") cfg.request_timeout = std::atoi(value.c_str());
        else if (key == "dimse_timeout") cfg.dimse_timeout = std::atoi(value.c_str());
        else if (key == "max_request_bytes") cfg.max_request_bytes = std::atol(value.c_str());
        else if (key == "max_connections") cfg.max_connections = std::atoi(value.c_str());
        else if (key == "max_connections_per_host") cfg.max_connections_per_host = std::atoi(value.c_str());
        else if (key == "max_associations") cfg.max_associations = std::atoi(value.c_str());
        else if (key == "max_associations_per_peer") cfg.max_associations_per_peer = std::atoi(value.c_str());
        else if (key == "max_object_bytes") cfg.max_object_bytes = std::atoll(value.c_str());
        else if (key == "ts") cfg.ts.push_back(value);
        else if (key == "sop") cfg.sop.insert(value);
        else if (key == "net") {
            Net net;
            if (!parse_net(value, net)) {
                std::fprintf(stderr, "curata-spool-scp: bad network in config: %s\n", value.c_str());
                return false;
            }
            cfg.nets.push_back(net);
        } else if (key == "allow") {
            size_t tab = value.find('\t');
            if (tab == std::string::npos) cfg.allow.emplace_back(value, "");
            else cfg.allow.emplace_back(value.substr(0, tab), value.substr(tab + 1));
        }
    }
    return !cfg.ts.empty();
}

bool fsync_path(const std::string& path, int flags) {
    int fd = open(path.c_str(), flags | O_CLOEXEC);
    if (fd < 0) return false;
    bool ok = fsync(fd) == 0;
    return close(fd) == 0 && ok;
}

// <ns since epoch>-<pid>-<n>.<calling AE in hex>.dcm: sorts by arrival, unique across children, and keeps
// the sender's AE title for a file drained after a restart
std::string unique_name(const std::string& calling_ae) {
    static unsigned long counter = 0;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    char buf[96];
    std::snprintf(buf, sizeof buf, "%016llx-%d-%lu.",
                  static_cast<unsigned long long>(ts.tv_sec) * 1000000000ULL + static_cast<unsigned long long>(ts.tv_nsec),
                  static_cast<int>(getpid()), ++counter);
    std::string name = buf;
    static const char hex[] = "0123456789abcdef";
    for (unsigned char c : calling_ae) {
        name += hex[c >> 4];
        name += hex[c & 15];
    }
    return name + ".dcm";
}

struct StoreContext {
    std::string tmp;
    std::string name;
    std::string calling_ae;
    bool too_big = false;
};

void store_callback(void* data, T_DIMSE_StoreProgress* progress, T_DIMSE_C_StoreRQ* req, char*, DcmDataset**,
                    T_DIMSE_C_StoreRSP* response, DcmDataset**) {
    StoreContext* ctx = static_cast<StoreContext*>(data);
    if (progress->state == DIMSE_StoreProgressing && progress->progressBytes > cfg.max_object_bytes) {
        ctx->too_big = true;
    }
    if (progress->state != DIMSE_StoreEnd) return;
    response->DimseStatus = STATUS_Success;
    std::string ready = spool_ready + "/" + ctx->name;
    if (ctx->too_big) {
        unlink(ctx->tmp.c_str());
        response->DimseStatus = 0xA700;
        ctx->name.clear();
        return;
    }
    // durable before success: the file's data, its new name, and the folder holding the name
    if (!fsync_path(ctx->tmp, O_RDONLY) || rename(ctx->tmp.c_str(), ready.c_str()) != 0 ||
        !fsync_path(spool_ready, O_RDONLY | O_DIRECTORY)) {
        unlink(ctx->tmp.c_str());
        response->DimseStatus = 0xA700;
        emit(std::string("failed\tcannot make a received instance durable: ") + std::strerror(errno));
        ctx->name.clear();
        return;
    }
    // the event before the answer: when the sender learns of its success, the gateway knows of it too
    emit("stored\t" + ctx->name + "\t" + ctx->calling_ae + "\t" + clean(req->AffectedSOPInstanceUID));
}

void reject(T_ASC_Association* assoc, T_ASC_RejectParametersResult result, T_ASC_RejectParametersSource source,
            T_ASC_RejectParametersReason reason) {
    T_ASC_RejectParameters rej = {result, source, reason};
    ASC_rejectAssociation(assoc, &rej);
}

// Accept, in each proposed presentation context, the first transfer syntax *the sender* lists that we
// accept: senders put the syntax their data is in first, so lossless data stays as sent and no sender
// is asked to re-encode (a lossy syntax is chosen only when the sender proposes it first).
void negotiate(T_ASC_Parameters* params) {
    int n = ASC_countPresentationContexts(params);
    for (int i = 0; i < n; ++i) {
        T_ASC_PresentationContext pc;
        if (ASC_getPresentationContext(params, i, &pc).bad()) continue;
        std::string abstract = pc.abstractSyntax;
        bool verification = abstract == UID_VerificationSOPClass;
        if (!verification && cfg.sop.count(abstract) == 0) {
            ASC_refusePresentationContext(params, pc.presentationContextID, ASC_P_ABSTRACTSYNTAXNOTSUPPORTED);
            continue;
        }
        const char* chosen = nullptr;
        for (int t = 0; t < pc.transferSyntaxCount && chosen == nullptr; ++t) {
            for (const std::string& ours : cfg.ts) {
                if (ours == pc.proposedTransferSyntaxes[t]) {
                    chosen = pc.proposedTransferSyntaxes[t];
                    break;
                }
            }
        }
        if (chosen == nullptr) {
            ASC_refusePresentationContext(params, pc.presentationContextID, ASC_P_TRANSFERSYNTAXESNOTSUPPORTED);
        } else {
            ASC_acceptPresentationContext(params, pc.presentationContextID, chosen);
        }
    }
}

int serve_association(int sock, const std::string& host, bool busy) {
    dcmExternalSocketHandle.set(sock);
    dcmDisableGethostbyaddr.set(OFTrue);
    dcmAssociatePDUSizeLimit.set(static_cast<size_t>(cfg.max_request_bytes));
    T_ASC_Network* net = nullptr;
    if (ASC_initializeNetwork(NET_ACCEPTOR, 0, cfg.request_timeout, &net).bad()) return 1;
    T_ASC_Association* assoc = nullptr;
    // dcmtk receives PDUs of 4 KiB to 128 KiB (ASC_MAXIMUMPDUSIZE): a larger setting is clamped
    long max_pdu = cfg.max_pdu < ASC_MINIMUMPDUSIZE ? ASC_MINIMUMPDUSIZE : cfg.max_pdu;
    if (max_pdu > ASC_MAXIMUMPDUSIZE) max_pdu = ASC_MAXIMUMPDUSIZE;
    OFCondition cond = ASC_receiveAssociation(net, &assoc, max_pdu, nullptr, nullptr, OFFalse, DUL_NOBLOCK,
                                              cfg.request_timeout);
    if (cond.bad()) {
        emit("dropped\tno valid association request\t" + host);
        if (getenv("CURATA_SPOOL_DEBUG")) std::fprintf(stderr, "%s\n", cond.text());
        if (assoc) ASC_destroyAssociation(&assoc);
        ASC_dropNetwork(&net);
        return 1;
    }
    char calling[65] = {0}, called[65] = {0}, responding[65] = {0};
    ASC_getAPTitles(assoc->params, calling, sizeof calling, called, sizeof called, responding, sizeof responding);
    std::string calling_ae = clean(calling), called_ae = clean(called);
    bool allowed = cfg.allow.empty();
    for (const auto& rule : cfg.allow) {
        if (rule.first == calling_ae && (rule.second.empty() || rule.second == host)) allowed = true;
    }
    if (busy) {  // over the association limits: the sender may try again later
        emit("refused\tassociation limit reached\t" + calling_ae + "\t" + host);
        reject(assoc, ASC_RESULT_REJECTEDTRANSIENT, ASC_SOURCE_SERVICEPROVIDER_PRESENTATION_RELATED,
               ASC_REASON_SP_PRES_LOCALLIMITEXCEEDED);
    } else if (!allowed) {
        emit("refused\tcalling AE title not allowed\t" + calling_ae + "\t" + host);
        reject(assoc, ASC_RESULT_REJECTEDPERMANENT, ASC_SOURCE_SERVICEUSER, ASC_REASON_SU_CALLINGAETITLENOTRECOGNIZED);
    } else if (cfg.check_called && called_ae != cfg.ae) {
        emit("refused\tcalled AE title is not ours\t" + calling_ae + "\t" + host);
        reject(assoc, ASC_RESULT_REJECTEDPERMANENT, ASC_SOURCE_SERVICEUSER, ASC_REASON_SU_CALLEDAETITLENOTRECOGNIZED);
    } else {
        negotiate(assoc->params);
        ASC_setAPTitles(assoc->params, nullptr, nullptr, cfg.ae.c_str());
        if (ASC_acknowledgeAssociation(assoc).good()) {
            while (!stopping) {
                T_ASC_PresentationContextID pres_id = 0;
                T_DIMSE_Message msg;
                cond = DIMSE_receiveCommand(assoc, DIMSE_NONBLOCKING, cfg.dimse_timeout, &pres_id, &msg, nullptr);
                if (cond == DUL_PEERREQUESTEDRELEASE) {
                    ASC_acknowledgeRelease(assoc);
                    break;
                }
                if (cond.bad()) {  // aborted by the peer, timed out, or a broken PDU: end this association
                    if (cond != DUL_PEERABORTEDASSOCIATION) ASC_abortAssociation(assoc);
                    break;
                }
                if (msg.CommandField == DIMSE_C_ECHO_RQ) {
                    cond = DIMSE_sendEchoResponse(assoc, pres_id, &msg.msg.CEchoRQ, STATUS_Success, nullptr);
                } else if (msg.CommandField == DIMSE_C_STORE_RQ) {
                    StoreContext ctx;
                    ctx.name = unique_name(calling_ae);
                    ctx.tmp = spool_tmp + "/" + ctx.name;
                    ctx.calling_ae = calling_ae;
                    T_DIMSE_C_StoreRQ* req = &msg.msg.CStoreRQ;
                    cond = DIMSE_storeProvider(assoc, pres_id, req, ctx.tmp.c_str(), 1, nullptr, store_callback, &ctx,
                                               DIMSE_NONBLOCKING, cfg.dimse_timeout);
                    if (ctx.too_big) {
                        emit("dropped\tdata set larger than max_object_bytes\t" + host);
                    } else if (cond.bad()) {  // a data set the message rules refuse, a timeout, an abort
                        emit("dropped\tthe data set was not received whole (" + condition_words(cond) +
                             "): association aborted, nothing acknowledged\t" + host);
                    }
                    unlink(ctx.tmp.c_str());  // a receive that failed half-way leaves nothing behind
                } else {
                    emit("dropped\tunsupported DIMSE command\t" + host);
                    ASC_abortAssociation(assoc);
                    break;
                }
                if (cond.bad()) {
                    ASC_abortAssociation(assoc);
                    break;
                }
            }
        }
    }
    ASC_dropSCPAssociation(assoc);
    ASC_destroyAssociation(&assoc);
    ASC_dropNetwork(&net);
    return 0;
}

void on_term(int) { stopping = 1; }

std::string address_of(const sockaddr_storage& ss, int& family, unsigned char* raw) {
    char buf[INET6_ADDRSTRLEN] = {0};
    if (ss.ss_family == AF_INET6) {
        const sockaddr_in6* a = reinterpret_cast<const sockaddr_in6*>(&ss);
        if (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr)) {
            family = AF_INET;
            std::memcpy(raw, a->sin6_addr.s6_addr + 12, 4);
        } else {
            family = AF_INET6;
            std::memcpy(raw, a->sin6_addr.s6_addr, 16);
        }
    } else {
        family = AF_INET;
        std::memcpy(raw, &reinterpret_cast<const sockaddr_in*>(&ss)->sin_addr, 4);
    }
    inet_ntop(family, raw, buf, sizeof buf);
    return buf;
}

}  // namespace

int main(int argc, char** argv) {
    const char* config = nullptr;
    const char* spool = nullptr;
    const char* bind_host = "127.0.0.1";
    const char* port = "11112";
    for (int i = 1; i + 1 < argc; i += 2) {
        std::string opt = argv[i];
        if (opt == "--config") config = argv[i + 1];
        else if (opt == "--spool") spool = argv[i + 1];
        else if (opt == "--bind") bind_host = argv[i + 1];
        else if (opt == "--port") port = argv[i + 1];
    }
    if (config == nullptr || spool == nullptr || !load_config(config)) {
        std::fprintf(stderr, "usage: curata-spool-scp --config FILE --spool DIR [--bind HOST] [--port N]\n");
        return 2;
    }
    OFLog::configure(OFLogger::FATAL_LOG_LEVEL);  // dcmtk's own messages may quote data: keep them out
    prctl(PR_SET_PDEATHSIG, SIGTERM);           // the gateway's end is ours
    umask(077);
    spool_tmp = std::string(spool) + "/tmp";
    spool_ready = std::string(spool) + "/ready";
    mkdir(spool_tmp.c_str(), 0700);
    mkdir(spool_ready.c_str(), 0700);

    addrinfo hints{}, *res = nullptr;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    if (getaddrinfo(bind_host, port, &hints, &res) != 0 || res == nullptr) {
        std::fprintf(stderr, "curata-spool-scp: cannot resolve %s\n", bind_host);
        return 2;
    }
    int listener = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC, res->ai_protocol);
    int one = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (listener < 0 || bind(listener, res->ai_addr, res->ai_addrlen) != 0 || listen(listener, 128) != 0) {
        std::fprintf(stderr, "curata-spool-scp: cannot listen on %s:%s: %s\n", bind_host, port, std::strerror(errno));
        return 3;
    }
    freeaddrinfo(res);
    sockaddr_storage local{};
    socklen_t local_len = sizeof local;
    getsockname(listener, reinterpret_cast<sockaddr*>(&local), &local_len);
    int bound = ntohs(local.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&local)->sin6_port
                                                  : reinterpret_cast<sockaddr_in*>(&local)->sin_port);
    struct sigaction sa{};
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, nullptr);
    sigaction(SIGINT, &sa, nullptr);
    signal(SIGPIPE, SIG_IGN);
    emit("listening\t" + std::to_string(bound));

    std::map<pid_t, std::string> children;  // pid -> peer address
    std::map<std::string, int> per_host;
    while (!stopping) {
        for (pid_t pid; (pid = waitpid(-1, nullptr, WNOHANG)) > 0;) {
            auto it = children.find(pid);
            if (it != children.end()) {
                if (--per_host[it->second] <= 0) per_host.erase(it->second);
                children.erase(it);
            }
        }
        sockaddr_storage peer{};
        socklen_t peer_len = sizeof peer;
        struct timeval tv = {0, 200000};
        fd_set fds;
        FD_ZERO(&fds);
        FD_SET(listener, &fds);
        if (select(listener + 1, &fds, nullptr, nullptr, &tv) <= 0) continue;
        int sock = accept4(listener, reinterpret_cast<sockaddr*>(&peer), &peer_len, SOCK_CLOEXEC);
        if (sock < 0) continue;
        int family = AF_INET;
        unsigned char raw[16] = {0};
        std::string host = address_of(peer, family, raw);
        bool net_ok = cfg.nets.empty();
        for (const Net& net : cfg.nets) net_ok = net_ok || in_net(net, family, raw);
        if (!net_ok || static_cast<int>(children.size()) >= cfg.max_connections ||
            per_host[host] >= cfg.max_connections_per_host) {
            emit(std::string("dropped\t") + (net_ok ? "connection limit reached" : "address not allowed") + "\t" + host);
            if (per_host[host] == 0) per_host.erase(host);
            close(sock);
            continue;
        }
        setsockopt(sock, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        // connections beyond the association limits are still read, to be refused politely (transient)
        bool busy = static_cast<int>(children.size()) >= cfg.max_associations ||
                    per_host[host] >= cfg.max_associations_per_peer;
        pid_t pid = fork();
        if (pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGTERM);  // a child outliving the front end ends its association
            close(listener);
            signal(SIGINT, SIG_IGN);  // Ctrl-C reaches the whole group: the parent decides
            int flags = fcntl(sock, F_GETFD);
            fcntl(sock, F_SETFD, flags & ~FD_CLOEXEC);
            _exit(serve_association(sock, host, busy));
        }
        close(sock);
        if (pid > 0) {
            children[pid] = host;
            ++per_host[host];
        }
    }
    close(listener);
    // stop accepting; let the associations in flight end (each child finishes its current instance)
    for (auto& child : children) kill(child.first, SIGTERM);
    while (waitpid(-1, nullptr, 0) > 0) {
    }
    return 0;
}
