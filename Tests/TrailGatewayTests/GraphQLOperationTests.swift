import Testing
@testable import TrailGateway

@Suite struct GraphQLOperationTests {
    @Test func operationFromJSONBodies() {
        func op(_ json: String) -> GraphQLOperation? { GraphQLOperation.fromJSON(Array(json.utf8)) }
        #expect(op(#"{"query": "mutation CreateOrder($i: ID!) { create(i: $i) { id } }"}"#) == .init(type: "mutation", name: "CreateOrder"))
        #expect(op(#"{"variables": {"a": [1, {"b": "}"}]}, "operationName": "B", "query": "query A { a } query B { b }"}"#) == .init(type: "query", name: "B"))
        #expect(op(#"{"query": "{ items { id } }"}"#) == .init(type: "query", name: nil))
        #expect(op(##"{"query": "# comment\n fragment F on query { id } subscription Live @live { f }"}"##) == .init(type: "subscription", name: "Live"))
        #expect(op(#"[{"query": "mutation M { m }"}, {"query": "query Q { q }"}]"#) == .init(type: "mutation", name: "M"))
        // A cut-off body: what the prefix shows.
        #expect(op(#"{"query": "mutation Pay { pay(amount: 10"#) == .init(type: "mutation", name: "Pay"))
        // An operationName that is not a GraphQL name is not recorded.
        #expect(op(#"{"operationName": "x\u001b[31m", "query": "query A { a }"}"#) == .init(type: "query", name: "A"))
        #expect(op(#"{"query": "\"\"\" mutation X { \"\"\" query Real { a }"}"#) == .init(type: "query", name: "Real"))
        #expect(op("not json") == nil)
    }

    @Test func operationFromParameters() {
        #expect(GraphQLOperation.fromParameters(query: "query Catalog { items }", operationName: nil) == .init(type: "query", name: "Catalog"))
        #expect(GraphQLOperation.fromParameters(query: nil, operationName: "X") == nil)
        #expect(GraphQLOperation(type: "mutation", name: "CreateOrder").summary == "mutation CreateOrder")
    }
}
