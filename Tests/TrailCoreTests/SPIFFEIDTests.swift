import Foundation
import Testing
import TrailCore

@Suite("SPIFFEID")
struct SPIFFEIDTests {
    @Test func parsesWorkloadID() throws {
        let id = try SPIFFEID(parsing: "spiffe://shop.example/ns/shop/sa/web")
        #expect(id.trustDomain == "shop.example")
        #expect(id.path == "/ns/shop/sa/web")
        #expect(id.isLeaf)
        #expect(id.segments == ["ns", "shop", "sa", "web"])
        #expect(id.description == "spiffe://shop.example/ns/shop/sa/web")
        #expect(id.trustDomainID.description == "spiffe://shop.example")
    }

    @Test func trustDomainID() throws {
        let id = try SPIFFEID(parsing: "spiffe://shop.example")
        #expect(id.path == "")
        #expect(!id.isLeaf)
        #expect(id.segments.isEmpty)
    }

    @Test func schemeAndTrustDomainAreCaseInsensitivePathIsNot() throws {
        let id = try SPIFFEID(parsing: "SPIFFE://Shop.EXAMPLE/NS/Shop")
        #expect(id.description == "spiffe://shop.example/NS/Shop")
        #expect(id == (try SPIFFEID(parsing: "spiffe://shop.example/NS/Shop")))
        #expect(id != (try SPIFFEID(parsing: "spiffe://shop.example/ns/shop")))
    }

    @Test func allowedCharacters() throws {
        let id = try SPIFFEID(parsing: "spiffe://a-b_c.9/A-z_0.9/x..y/.hidden")
        #expect(id.trustDomain == "a-b_c.9")
        #expect(id.path == "/A-z_0.9/x..y/.hidden")
        // IPv4-looking trust domains are allowed.
        #expect(SPIFFEID.parse("spiffe://10.0.0.1/x")?.trustDomain == "10.0.0.1")
    }

    @Test(arguments: [
        ("", SPIFFEIDError.empty),
        ("shop.example/ns", .missingScheme),
        ("https://shop.example/ns", .wrongScheme("https")),
        ("spiffe:/shop.example", .wrongScheme("spiffe")),
        ("spiffe://", .missingTrustDomain),
        ("spiffe:///ns/shop", .missingTrustDomain),
        ("spiffe://shop.example:8443/ns", .port),
        ("spiffe://user@shop.example/ns", .userinfo),
        ("spiffe://shop.example/ns?x=1", .query),
        ("spiffe://shop.example/ns#frag", .fragment),
        ("spiffe://shop.example/ns/%41", .percentEncoding),
        ("spiffe://shop%2Eexample/ns", .percentEncoding),
        ("spiffe://shop example/ns", .invalidTrustDomainCharacter(" ")),
        ("spiffe://[::1]/ns", .invalidTrustDomainCharacter("[")),
        ("spiffe://shop.example/ns/sh*p", .invalidPathCharacter("*")),
        ("spiffe://shop.example/ns//sa", .emptySegment),
        ("spiffe://shop.example/ns/./sa", .dotSegment(".")),
        ("spiffe://shop.example/ns/..", .dotSegment("..")),
        ("spiffe://shop.example/ns/", .trailingSlash),
        ("spiffe://shop.example/", .trailingSlash),
    ])
    func rejects(_ text: String, _ expected: SPIFFEIDError) {
        #expect(SPIFFEID.validate(text) == expected)
        #expect(SPIFFEID.parse(text) == nil)
    }

    @Test func lengthLimits() {
        let base = "spiffe://shop.example/"
        let ok = base + String(repeating: "a", count: SPIFFEID.maximumLength - base.utf8.count)
        #expect(ok.utf8.count == 2048)
        #expect(SPIFFEID.parse(ok) != nil)
        #expect(SPIFFEID.validate(ok + "a") == .tooLong(2049))

        let domain255 = String(repeating: "d", count: 255)
        #expect(SPIFFEID.parse("spiffe://" + domain255 + "/x")?.trustDomain == domain255)
        #expect(SPIFFEID.validate("spiffe://" + domain255 + "d/x") == .trustDomainTooLong(256))
    }

    @Test func errorsReadAsReasons() {
        #expect(SPIFFEIDError.port.description == "SPIFFE ID has a port")
        #expect(SPIFFEIDError.wrongScheme("https").description == "scheme is \"https\", not spiffe://")
        #expect(SPIFFEIDError.dotSegment("..").description == "path has a '..' segment")
        #expect(SPIFFEID.validate("spiffe://shop.example/n\u{7}") == .invalidPathCharacter("\\x07"))
    }

    @Test func codableAsCanonicalString() throws {
        let id = try SPIFFEID(parsing: "spiffe://SHOP.example/ns/shop/sa/web")
        let data = try JSONEncoder().encode([id])
        #expect(String(decoding: data, as: UTF8.self) == #"["spiffe:\/\/shop.example\/ns\/shop\/sa\/web"]"#)
        #expect(try JSONDecoder().decode([SPIFFEID].self, from: data) == [id])
        #expect(throws: DecodingError.self) {
            try JSONDecoder().decode([SPIFFEID].self, from: Data(#"["spiffe://x/"]"#.utf8))
        }
    }

    @Test func buildsFromParts() throws {
        #expect(try SPIFFEID(trustDomain: "shop.example", path: "/ns/a").description == "spiffe://shop.example/ns/a")
        #expect(throws: SPIFFEIDError.trailingSlash) { try SPIFFEID(trustDomain: "shop.example", path: "/") }
    }
}
