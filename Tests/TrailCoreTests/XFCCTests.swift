import Testing

@testable import TrailCore

@Suite("x-forwarded-client-cert")
struct XFCCTests {
    @Test func parsesEnvoysDocumentedExample() throws {
        let header = "By=http://frontend.lyft.com;Hash=468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688;"
            + "Subject=\"/C=US/ST=CA/L=San Francisco/OU=Lyft/CN=Test Client\";URI=http://testclient.lyft.com"
        let elements = try XFCC.parse(header).get()
        #expect(elements.count == 1)
        let e = try #require(elements.first)
        #expect(e.by == "http://frontend.lyft.com")
        #expect(e.hash == "468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688")
        #expect(e.normalizedHash == "468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688")
        #expect(e.subject == "/C=US/ST=CA/L=San Francisco/OU=Lyft/CN=Test Client")
        #expect(e.uris == ["http://testclient.lyft.com"])
        #expect(e.uri == "http://testclient.lyft.com")
        #expect(e.dns.isEmpty)
        #expect(e.cert == nil && e.chain == nil)
    }

    @Test func istioSidecarElementWithEmptySubject() throws {
        let header = "By=spiffe://cluster.local/ns/foo/sa/httpbin;Hash=ABCDEF0123456789abcdef0123456789ABCDEF0123456789abcdef0123456789;"
            + "Subject=\"\";URI=spiffe://cluster.local/ns/foo/sa/sleep"
        let e = try #require(try XFCC.parse(header).get().first)
        #expect(e.subject == "")
        #expect(e.uri == "spiffe://cluster.local/ns/foo/sa/sleep")
        #expect(e.normalizedHash == "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789")
    }

    @Test func splitsElementsOutsideQuotesOnly() throws {
        let header = "By=spiffe://td/gw;Subject=\"CN=a, O=b; c=d\";URI=spiffe://td/client;DNS=a.example;DNS=b.example,"
            + "by=spiffe://td/orders;SUBJECT=\"\";uri=spiffe://td/gw;uri=spiffe://td/gw-alt"
        let elements = try XFCC.parse(header).get()
        #expect(elements.count == 2)
        #expect(elements[0].subject == "CN=a, O=b; c=d")
        #expect(elements[0].dns == ["a.example", "b.example"])
        #expect(elements[0].uris == ["spiffe://td/client"])
        // Keys are case-insensitive; URI repeats.
        #expect(elements[1].by == "spiffe://td/orders")
        #expect(elements[1].uris == ["spiffe://td/gw", "spiffe://td/gw-alt"])
        #expect(elements.last?.uri == "spiffe://td/gw")
    }

    @Test func unescapesQuotes() throws {
        let e = try #require(try XFCC.parse(#"Subject="CN=\"quoted\",O=x";URI=spiffe://td/a"#).get().first)
        #expect(e.subject == #"CN="quoted",O=x"#)
        #expect(XFCC.format([e]) == #"Subject="CN=\"quoted\",O=x";URI=spiffe://td/a"#)
        #expect(try XFCC.parse(XFCC.format([e])).get() == [e])
    }

    @Test func decodesCertAndChain() throws {
        let e = try #require(try XFCC.parse(
            "Cert=\"-----BEGIN%20CERTIFICATE-----%0AMIIB%0A-----END%20CERTIFICATE-----%0A\";Chain=x%2Fy").get().first)
        #expect(e.cert == "-----BEGIN%20CERTIFICATE-----%0AMIIB%0A-----END%20CERTIFICATE-----%0A")
        #expect(e.certPEM == "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
        #expect(e.chainPEM == "x/y")
        #expect(XFCC.percentDecode("%zz") == nil)
        #expect(XFCC.percentDecode("abc%4") == nil)
    }

    @Test func toleratesEmptyElementsAndWhitespace() throws {
        let elements = try XFCC.parse(" By=a ; URI=b ,, URI=c , ").get()
        #expect(elements == [XFCCElement(by: "a", uris: ["b"]), XFCCElement(uris: ["c"])])
        #expect(try XFCC.parse("").get().isEmpty)
        // Unknown keys are ignored; '=' inside an unquoted value is kept.
        #expect(try XFCC.parse("Foo=bar;URI=spiffe://td/x?a=b").get() == [XFCCElement(uris: ["spiffe://td/x?a=b"])])
    }

    @Test(arguments: [
        ("By=a;Subject=\"unterminated", "x-forwarded-client-cert: element 1: unterminated quoted value for Subject"),
        ("By=a,URI", "x-forwarded-client-cert: element 2: 'URI' has no '='"),
        ("=x", "x-forwarded-client-cert: element 1: empty key"),
        ("Subject=\"a\"b;URI=x", "x-forwarded-client-cert: element 1: text after the quoted value of Subject"),
        ("URI=a\"b", "x-forwarded-client-cert: element 1: unexpected '\"' inside the value of URI"),
    ])
    func rejectsMalformedHeaders(input: String, reason: String) {
        if case .failure(let e) = XFCC.parse(input) {
            #expect(e.description == reason)
        } else {
            Issue.record("accepted \(input)")
        }
    }
}
