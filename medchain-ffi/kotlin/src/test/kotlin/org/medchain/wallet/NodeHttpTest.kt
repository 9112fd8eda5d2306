package org.medchain.wallet

import java.io.File
import java.net.URI
import java.net.URLEncoder
import java.net.http.HttpClient
import java.net.http.HttpRequest
import java.net.http.HttpResponse
import java.nio.charset.StandardCharsets
import java.nio.file.Files
import java.security.SecureRandom
import java.time.Duration
import java.util.Base64
import java.util.concurrent.TimeUnit
import org.junit.jupiter.api.AfterAll
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertFalse
import org.junit.jupiter.api.Assertions.assertNotEquals
import org.junit.jupiter.api.Assertions.assertNotNull
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.BeforeAll
import org.junit.jupiter.api.MethodOrderer
import org.junit.jupiter.api.Order
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.TestInstance
import org.junit.jupiter.api.TestMethodOrder
import org.junit.jupiter.api.assertThrows
import org.junit.jupiter.api.extension.ExtensionContext
import org.junit.jupiter.api.extension.RegisterExtension
import org.junit.jupiter.api.extension.TestWatcher

/**
 * The phone wallet against a running network, over HTTP (JDK HttpClient), the way an app talks
 * to a member node: `medchaind local-net --nodes 4 --start` on loopback, the wallet's own
 * SMART assertion for its token, its enrolment at a hospital, a record the hospital writes, the
 * wallet's consent for the clinicians of another institution committed through the FHIR API
 * and proven with [TrustedNetwork] from the genesis alone, the cross-institution read, and that
 * read found (and proven) in the patient's audit trail.
 *
 * `medchaind` is the dev build `scripts/test.sh` passes as `-Dmedchain.medchaind`; without it
 * the class fails (it never skips). The one process is stopped (SIGTERM, then a bounded wait,
 * then a kill) in [stop], also when a test fails; every wait is bounded.
 *
 * The tests run in order and build on each other (one patient's story).
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
@TestMethodOrder(MethodOrderer.OrderAnnotation::class)
class NodeHttpTest {
    private companion object {
        const val NODES = 4
        const val CLINICIAN = "drlee"
        const val BACKEND = "backend"
        const val BACKEND_KID = "backend-1"
        const val ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
        const val SIGNED_BODY = "application/vnd.medchain.signed-body"
        const val HOSPITAL = 1 // writes the record, holds the enrolment
        const val OTHER = 2 // its clinicians are granted the read
        const val STRANGER = 3 // its clinicians are not
        val START_LIMIT: Duration = Duration.ofSeconds(40)
        val COMMIT_LIMIT: Duration = Duration.ofSeconds(20)
    }

    private val http: HttpClient = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build()
    private val b64url = Base64.getUrlEncoder().withoutPadding()
    private val b64 = Base64.getEncoder()

    private lateinit var work: File
    private lateinit var netDir: File
    private lateinit var launcherLog: File
    private var process: Process? = null
    private lateinit var genesis: ByteArray
    private lateinit var genesisHash: String
    private val api = HashMap<Int, String>()
    private val member = HashMap<Int, String>()

    private lateinit var backend: Wallet
    private lateinit var patient: Wallet
    private lateinit var patientKey: String
    private val patientTokens = HashMap<Int, String>()
    private val backendTokens = HashMap<Int, String>()
    private var recordId: String? = null
    private var consentTx: String? = null
    private var consentId: String? = null

    // --- the network ----------------------------------------------------------------------------

    @BeforeAll
    fun start() {
        failed = true // until the network is up: a failure here keeps its logs too
        val medchaind = System.getProperty("medchain.medchaind")?.takeIf { it.isNotBlank() }
            ?: error("set -Dmedchain.medchaind to the medchaind binary (scripts/test.sh does)")
        assertTrue(File(medchaind).canExecute(), "medchaind is not an executable file: $medchaind")
        work = Files.createTempDirectory("medchain-node-http").toFile()
        netDir = File(work, "net")
        launcherLog = File(work, "local-net.log")

        // The backend client's key is a second wallet's: its JWK is the wallet's ed25519 key.
        backend = Wallet.create(newInMemoryWalletStore(), "backend password")
        val jwks = File(work, "backend.jwks.json")
        val x = b64url.encodeToString(hex(backend.identityInfo().signingKey))
        jwks.writeText("""{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"$BACKEND_KID","x":"$x","alg":"EdDSA","use":"sig"}]}""")

        process = ProcessBuilder(
            medchaind, "local-net", "--nodes", "$NODES", "--dir", netDir.path, "--start",
            "--clinician", CLINICIAN, "--client", "$BACKEND=${jwks.path}",
        ).redirectErrorStream(true).redirectOutput(launcherLog).start()
        hook = Thread { process?.let { p -> p.descendants().forEach { it.destroy() }; p.destroy() } }
            .also { Runtime.getRuntime().addShutdownHook(it) }

        val deadline = System.nanoTime() + START_LIMIT.toNanos()
        // The launcher prints the genesis hash once it has written the network.
        genesisHash = poll("the local net to be written", deadline) {
            Regex("""(?m)^genesis\s+([0-9a-f]{64})\s*$""").find(launcherLog.readText())?.groupValues?.get(1)
        }
        genesis = File(netDir, "genesis.bin").readBytes()
        for (i in 1..NODES) {
            val dir = File(netDir, "node-$i")
            val toml = File(dir, "node.toml").readText()
            api[i] = "http://" + (Regex("""(?m)^api\s*=\s*"([^"]+)"""").find(toml)?.groupValues?.get(1) ?: error("no api in node-$i"))
            member[i] = Regex("""(?m)^identity\s*=\s*"(mcid1[^"]+)"""").find(File(dir, "identity.pub").readText())?.groupValues?.get(1)
                ?: error("no identity in node-$i/identity.pub")
        }
        for (i in 1..NODES) {
            poll("node-$i /health", deadline) { runCatching { get(i, "/health").statusCode() == 200 }.getOrNull()?.takeIf { it } }
        }
        for (i in 1..NODES) {
            backendTokens[i] = backendToken(i)
            poll("node-$i to reach its peers", deadline) {
                val status = get(i, "/v1/status", backendTokens[i])
                val peers = Regex(""""peers_connected"\s*:\s*(\d+)""").find(status.body())?.groupValues?.get(1)?.toInt() ?: 0
                (peers >= NODES - 1).takeIf { it }
            }
        }
        patient = Wallet.create(newInMemoryWalletStore(), "patient password")
        patientKey = patient.identityInfo().signingKey
        failed = false
    }

    @AfterAll
    fun stop() {
        val p = process ?: return
        process = null
        hook?.let { runCatching { Runtime.getRuntime().removeShutdownHook(it) } }
        val nodes = p.descendants().toList() // the nodes the launcher started, by pid
        p.destroy() // SIGTERM: the launcher stops its nodes (SIGTERM, at most 15 s, then a kill)
        val stopped = p.waitFor(25, TimeUnit.SECONDS)
        if (!stopped) {
            p.destroyForcibly()
            p.waitFor(5, TimeUnit.SECONDS)
        }
        for (node in nodes) {
            if (!stopped && node.isAlive) node.destroyForcibly()
            runCatching { node.onExit().get(5, TimeUnit.SECONDS) }
        }
        val alive = nodes.filter { it.isAlive }.map { it.pid() }
        if (failed) {
            System.err.println("NodeHttpTest failed: the network's logs are kept in $work\n${tail()}")
        } else {
            work.deleteRecursively()
        }
        assertTrue(stopped, "medchaind local-net did not stop on SIGTERM within 25 s")
        assertTrue(alive.isEmpty(), "nodes still running: $alive")
    }

    /** Stops the launcher (and so its nodes) if the JVM exits without [stop]. */
    private var hook: Thread? = null

    /** Whether a test failed: the network's directory is then kept. */
    private var failed = false

    @JvmField
    @RegisterExtension
    val watcher: TestWatcher = object : TestWatcher {
        override fun testFailed(context: ExtensionContext, cause: Throwable?) {
            failed = true
        }
    }

    // --- the story ------------------------------------------------------------------------------

    @Test
    @Order(1)
    fun `the wallet pins the genesis and its own assertion gets a patient token, once`() {
        val info = patient.trustNetwork(genesis, genesisHash)
        assertEquals(genesisHash, info.genesisHash)
        assertEquals(NODES.toUInt(), info.validators)
        val audience = tokenEndpoint(HOSPITAL)
        val assertion = patient.patientClientAssertion(audience, nowSeconds())
        val (status, answer) = token(HOSPITAL, assertion, "patient/*.rs patient/Consent.c")
        assertEquals(200, status, answer.toString())
        assertEquals("bearer", answer.str("token_type").lowercase())
        patientTokens[HOSPITAL] = answer.str("access_token")
        // The same assertion again is a replay; one for another node's endpoint is refused here.
        val (again, refused) = token(HOSPITAL, assertion, "patient/*.rs patient/Consent.c")
        assertEquals(401, again, refused.toString())
        assertEquals("invalid_client", refused.str("error"))
        val elsewhere = patient.patientClientAssertion(tokenEndpoint(OTHER), nowSeconds())
        assertEquals(401, token(HOSPITAL, elsewhere, "patient/*.rs").first)
        // A bad audience never reaches a node: a typed error on the phone.
        assertThrows<WalletException.InvalidArgument> { patient.patientClientAssertion("not a url", nowSeconds()) }
        assertThrows<WalletException.InvalidArgument> { patient.patientClientAssertion(audience, nowSeconds() * 1000uL) }
    }

    @Test
    @Order(2)
    fun `the patient enrols at the hospital with the writer key sealed to its member`() {
        val sealed = patient.exportWriterKey(member.getValue(HOSPITAL))
        val body = """{"resourceType":"Parameters","parameter":[{"name":"enrolment","valueBase64Binary":"${b64.encodeToString(sealed)}"}]}"""
        val r = fhir("POST", HOSPITAL, "/fhir/Patient/\$enrol", patientTokens[HOSPITAL], body)
        assertEquals(200, r.statusCode(), r.body())
        assertEquals("Patient/$patientKey", Json.parse(r.body()).at("parameter", 0, "valueReference", "reference"))
    }

    @Test
    @Order(3)
    fun `the hospital writes a record for the patient`() {
        val observation = """{"resourceType":"Observation","status":"final",
            "code":{"coding":[{"system":"http://loinc.org","code":"4548-4","display":"Hemoglobin A1c"}]},
            "subject":{"reference":"Patient/$patientKey"},"effectiveDateTime":"2026-10-14T09:30:00Z",
            "valueQuantity":{"value":7.9,"unit":"%","system":"http://unitsofmeasure.org","code":"%"}}"""
        val r = fhir("POST", HOSPITAL, "/fhir/Observation", backendTokens[HOSPITAL], observation, clinician = CLINICIAN)
        assertEquals(201, r.statusCode(), r.body())
        val location = r.headers().firstValue("location").orElse("")
        val id = Regex("""^Observation/([0-9a-f]{64})/_history/1$""").find(location)?.groupValues?.get(1)
        assertNotNull(id, "Location: $location")
        recordId = id
    }

    @Test
    @Order(4)
    fun `the wallet's consent is committed through the FHIR API and proven with the genesis alone`() {
        val grant = patient.signConsent(ConsentDraft(
            summary = "The clinicians of the other hospital may read my lab results for my treatment",
            issuedMs = System.currentTimeMillis().toULong(),
            rules = listOf(ConsentRule(
                effect = RuleEffect.PERMIT,
                grantees = listOf(Grantee.Clinician(member.getValue(OTHER))),
                actions = listOf(ConsentAction.READ),
                purposes = listOf(PurposeOfUse.Treatment),
                resourceTypes = listOf("Observation"),
            )),
        ))
        assertEquals(RequestKind.CONSENT_GRANT, grant.kind)
        val resource = """{"resourceType":"Consent","status":"active","sourceAttachment":{"contentType":"$SIGNED_BODY","data":"${b64.encodeToString(grant.body)}"}}"""
        val r = fhir("POST", HOSPITAL, "/fhir/Consent", patientTokens[HOSPITAL], resource)
        assertTrue(r.statusCode() == 201 || r.statusCode() == 202, "${r.statusCode()} ${r.body()}")
        assertEquals("Consent/${grant.subjectId}", r.headers().firstValue("location").orElse(""))
        val tx = r.headers().firstValue("x-medchain-transaction").orElse("")
        assertTrue(Regex("^[0-9a-f]{64}$").matches(tx), "X-Medchain-Transaction: $tx")
        consentTx = tx
        consentId = grant.subjectId
        // Committed: the node serves the consent (a 202 is followed until it does).
        val deadline = System.nanoTime() + COMMIT_LIMIT.toNanos()
        poll("the consent to commit", deadline) {
            fhir("GET", HOSPITAL, "/fhir/Consent/${grant.subjectId}", patientTokens[HOSPITAL]).statusCode().takeIf { it == 200 }
        }

        val (height, proof) = fetchProof(HOSPITAL, tx, deadline)
        val network = TrustedNetwork(genesis, genesisHash)
        val committed = network.verifyInclusion(proof)
        assertEquals(TransactionKind.CONSENT_GRANTED, committed.kind)
        assertEquals(tx, committed.txId)
        assertEquals(height, committed.height)
        assertEquals("node-$HOSPITAL", committed.contributorName)
        assertEquals(parsePublicIdentity(member.getValue(HOSPITAL)).signingKey, committed.contributor)
        // The wallet's pinned network says the same.
        assertEquals(committed, patient.verifyInclusion(proof))
    }

    @Test
    @Order(5)
    fun `a tampered proof from the node is refused with a typed error`() {
        val tx = consentTx ?: error("no committed consent")
        val (_, proof) = fetchProof(HOSPITAL, tx, System.nanoTime() + COMMIT_LIMIT.toNanos())
        val network = TrustedNetwork(genesis, genesisHash)
        // The last byte is the end of the last vote (its timestamp), which that vote signs.
        val lastByte = proof.copyOf().also { it[it.size - 1] = (it[it.size - 1].toInt() xor 1).toByte() }
        assertThrows<ProofException.BadVoteSignature> { network.verifyInclusion(lastByte) }
        assertThrows<ProofException.Malformed> { network.verifyInclusion(proof.copyOf(proof.size - 1)) }
        // Whatever byte is flipped, the proof is refused with a ProofException, never accepted.
        for (i in proof.indices step maxOf(proof.size / 64, 1)) {
            val t = proof.copyOf().also { it[i] = (it[i].toInt() xor 0x10).toByte() }
            assertThrows<ProofException>("a flip at byte $i") { network.verifyInclusion(t) }
        }
    }

    @Test
    @Order(6)
    fun `a clinician of the other hospital reads the record under the consent, a third is denied`() {
        val id = recordId ?: error("no record")
        val r = fhir("GET", OTHER, "/fhir/Observation/$id", backendTokens[OTHER], clinician = CLINICIAN, purpose = "TREAT")
        assertEquals(200, r.statusCode(), r.body())
        val read = Json.parse(r.body())
        assertEquals("4548-4", read.at("code", "coding", 0, "code"))
        assertEquals(7.9, read.at("valueQuantity", "value"))
        assertEquals("Patient/$patientKey", read.at("subject", "reference"))
        val denied = fhir("GET", STRANGER, "/fhir/Observation/$id", backendTokens[STRANGER], clinician = CLINICIAN, purpose = "TREAT")
        assertEquals(403, denied.statusCode(), denied.body())
        assertFalse(denied.body().contains("4548-4"), "a denial echoed the record")
    }

    @Test
    @Order(7)
    fun `the wallet finds that read in its audit trail and proves its transaction`() {
        val id = recordId ?: error("no record")
        val hospital = parsePublicIdentity(member.getValue(HOSPITAL)).signingKey
        val deadline = System.nanoTime() + COMMIT_LIMIT.toNanos()
        // The release and the read are logged on chain by the hospital that holds the record:
        // wait (bounded) for both entries.
        val events = poll("the read in the audit trail", deadline) {
            val r = fhir("GET", HOSPITAL, "/fhir/AuditEvent?patient=$patientKey", patientTokens[HOSPITAL])
            assertEquals(200, r.statusCode(), r.body())
            val bundle = Json.parse(r.body()) as Map<*, *>
            assertEquals("searchset", bundle.at("type"))
            val about = bundle.list("entry").map { (it as Map<*, *>)["resource"] as Map<*, *> }
                .filter { it.at("entity", 0, "what", "identifier", "value") == id }
            val read = about.firstOrNull { it.at("subtype", 0, "code") == "read" }
            val disclosed = about.firstOrNull { it.at("subtype", 0, "code") == "disclose" }
            if (read != null && disclosed != null) read to disclosed else null
        }
        val (read, disclosed) = events
        // Who: one clinician's identity (not the patient's), the one the key was disclosed to;
        // why: treatment, under the consent, no emergency; logged by the hospital's node.
        val who = parsePublicIdentity(read.at("agent", 0, "who", "identifier", "value") as String)
        assertNotEquals(patientKey, who.signingKey)
        assertEquals(who.text, disclosed.at("agent", 0, "who", "identifier", "value"))
        assertFalse(member.values.contains(who.text), "the reader is a clinician, not a member node")
        assertEquals("TREAT", read.at("purposeOfEvent", 0, "coding", 0, "code"))
        assertEquals(false, (read.list("extension").first { (it as Map<*, *>)["url"] == "urn:medchain:break-glass" } as Map<*, *>)["valueBoolean"])
        assertEquals("urn:medchain:consent", read.at("entity", 1, "what", "identifier", "system"))
        assertEquals(consentId, read.at("entity", 1, "what", "identifier", "value"))
        assertEquals(hospital, read.at("source", "observer", "identifier", "value"))
        // The entry's transaction is proven committed with the genesis alone.
        val tx = read.at("id") as String
        val (height, proof) = fetchProof(HOSPITAL, tx, deadline)
        val committed = patient.verifyInclusion(proof)
        assertEquals(TransactionKind.ACCESS_LOGGED, committed.kind)
        assertEquals(tx, committed.txId)
        assertEquals(height, committed.height)
        assertEquals(hospital, committed.contributor)
        // Another patient's trail is not the patient's to read.
        val stranger = Wallet.create(newInMemoryWalletStore(), "stranger password").identityInfo().signingKey
        val r = fhir("GET", HOSPITAL, "/fhir/AuditEvent?patient=$stranger", patientTokens[HOSPITAL])
        assertEquals(403, r.statusCode(), r.body())
    }

    // --- HTTP -----------------------------------------------------------------------------------

    private fun nowSeconds(): ULong = (System.currentTimeMillis() / 1000).toULong()

    private fun get(i: Int, path: String, token: String? = null): HttpResponse<String> {
        val b = HttpRequest.newBuilder(URI.create(api.getValue(i) + path)).timeout(Duration.ofSeconds(10)).GET()
        if (token != null) b.header("Authorization", "Bearer $token")
        return http.send(b.build(), HttpResponse.BodyHandlers.ofString())
    }

    private fun fhir(
        method: String,
        i: Int,
        path: String,
        token: String?,
        body: String? = null,
        clinician: String? = null,
        purpose: String? = null,
    ): HttpResponse<String> {
        val b = HttpRequest.newBuilder(URI.create(api.getValue(i) + path))
            .timeout(Duration.ofSeconds(40))
            .header("Accept", "application/fhir+json")
            .method(method, if (body == null) HttpRequest.BodyPublishers.noBody() else HttpRequest.BodyPublishers.ofString(body))
        if (body != null) b.header("Content-Type", "application/fhir+json")
        if (token != null) b.header("Authorization", "Bearer $token")
        if (clinician != null) b.header("X-Medchain-Clinician", clinician)
        if (purpose != null) b.header("X-Medchain-Purpose-Of-Use", purpose)
        return http.send(b.build(), HttpResponse.BodyHandlers.ofString())
    }

    /** The node's token endpoint, as its SMART configuration publishes it: the assertion's `aud`. */
    private fun tokenEndpoint(i: Int): String {
        val r = get(i, "/fhir/.well-known/smart-configuration")
        assertEquals(200, r.statusCode(), r.body())
        return (Json.parse(r.body()) as Map<*, *>).str("token_endpoint")
    }

    private fun form(vararg pairs: Pair<String, String>): String =
        pairs.joinToString("&") { (k, v) -> "$k=" + URLEncoder.encode(v, StandardCharsets.UTF_8) }

    /** `POST /fhir/auth/token` with [assertion] for [scope]: status and JSON answer. */
    private fun token(i: Int, assertion: String, scope: String): Pair<Int, Map<*, *>> {
        val body = form(
            "grant_type" to "client_credentials",
            "scope" to scope,
            "client_assertion_type" to ASSERTION_TYPE,
            "client_assertion" to assertion,
        )
        val r = http.send(
            HttpRequest.newBuilder(URI.create(api.getValue(i) + "/fhir/auth/token"))
                .timeout(Duration.ofSeconds(10))
                .header("Content-Type", "application/x-www-form-urlencoded")
                .POST(HttpRequest.BodyPublishers.ofString(body)).build(),
            HttpResponse.BodyHandlers.ofString(),
        )
        return r.statusCode() to (Json.parse(r.body()) as? Map<*, *> ?: emptyMap<String, Any>())
    }

    /**
     * The backend's token at node [i]: its assertion is built here and signed by the backend's
     * wallet with [Wallet.signJws] (a JWT of the app's own making, the registered key's `kid`).
     */
    private fun backendToken(i: Int): String {
        val now = nowSeconds().toLong()
        val jti = ByteArray(16).also { SecureRandom().nextBytes(it) }.joinToString("") { "%02x".format(it) }
        val header = """{"alg":"EdDSA","typ":"JWT","kid":"$BACKEND_KID"}"""
        val claims = """{"iss":"$BACKEND","sub":"$BACKEND","aud":"${tokenEndpoint(i)}","exp":${now + 60},"iat":$now,"jti":"$jti"}"""
        val input = b64url.encodeToString(header.toByteArray()) + "." + b64url.encodeToString(claims.toByteArray())
        val signature = backend.signJws(input)
        assertEquals(64, signature.size)
        val (status, answer) = token(i, input + "." + b64url.encodeToString(signature), "system/*.cruds")
        assertEquals(200, status, answer.toString())
        return answer.str("access_token")
    }

    /** `GET /v1/transactions/{tx}/proof` (operator route: the backend's token), polled until the commit is provable. */
    private fun fetchProof(i: Int, tx: String, deadline: Long): Pair<ULong, ByteArray> {
        val answer = poll("a proof of $tx", deadline) {
            val r = get(i, "/v1/transactions/$tx/proof", backendTokens[i])
            if (r.statusCode() == 200) Json.parse(r.body()) as Map<*, *> else null
        }
        assertEquals(tx, answer.str("id"))
        val height = (answer["height"] as Number).toLong().toULong()
        return height to hex(answer.str("proof"))
    }

    /** Calls [attempt] every 100 ms until it returns non-null, failing at [deadline] (nanoTime) with the launcher's log. */
    private fun <T : Any> poll(what: String, deadline: Long, attempt: () -> T?): T {
        while (true) {
            val p = process
            if (p != null && !p.isAlive) error("medchaind exited (${p.exitValue()}) while waiting for $what:\n${tail()}")
            attempt()?.let { return it }
            if (System.nanoTime() > deadline) error("timed out waiting for $what:\n${tail()}")
            Thread.sleep(100)
        }
    }

    /** The end of the launcher's output and of each node's log, for a failure message. */
    private fun tail(): String {
        val logs = listOf(launcherLog) + (1..NODES).map { File(netDir, "node-$it/node.log") }
        return logs.filter { it.isFile }.joinToString("\n") { f ->
            "--- ${f.name}\n" + f.readLines().takeLast(15).joinToString("\n")
        }
    }

    private fun hex(text: String): ByteArray {
        require(text.length % 2 == 0) { "odd hex" }
        return ByteArray(text.length / 2) { text.substring(2 * it, 2 * it + 2).toInt(16).toByte() }
    }

    private fun Map<*, *>.str(key: String): String = this[key] as? String ?: error("no string $key in $this")

    private fun Map<*, *>.list(key: String): List<*> = this[key] as? List<*> ?: emptyList<Any>()

    /** The value at a path of keys and indices, or null. */
    private fun Any?.at(vararg path: Any): Any? = path.fold(this) { v, step ->
        when (step) {
            is String -> (v as? Map<*, *>)?.get(step)
            is Int -> (v as? List<*>)?.getOrNull(step)
            else -> null
        }
    }
}

/** A small strict JSON reader for the tests (objects as maps, arrays as lists, numbers as Double or Long). */
internal object Json {
    fun parse(text: String): Any? = Reader(text).run { val v = value(); ws(); require(i == s.length) { "trailing text" }; v }

    private class Reader(val s: String) {
        var i = 0

        fun ws() { while (i < s.length && s[i] in " \t\r\n") i++ }

        fun value(): Any? {
            ws()
            require(i < s.length) { "unexpected end" }
            return when (s[i]) {
                '{' -> obj()
                '[' -> arr()
                '"' -> str()
                't' -> lit("true", true)
                'f' -> lit("false", false)
                'n' -> lit("null", null)
                else -> num()
            }
        }

        fun lit(word: String, v: Any?): Any? {
            require(s.startsWith(word, i)) { "bad literal at $i" }
            i += word.length
            return v
        }

        fun obj(): Map<String, Any?> {
            val m = LinkedHashMap<String, Any?>()
            i++
            ws()
            if (s[i] == '}') { i++; return m }
            while (true) {
                ws()
                val k = str()
                ws()
                require(s[i] == ':') { "expected : at $i" }
                i++
                m[k] = value()
                ws()
                when (s[i++]) {
                    ',' -> continue
                    '}' -> return m
                    else -> error("expected , or } at ${i - 1}")
                }
            }
        }

        fun arr(): List<Any?> {
            val l = ArrayList<Any?>()
            i++
            ws()
            if (s[i] == ']') { i++; return l }
            while (true) {
                l.add(value())
                ws()
                when (s[i++]) {
                    ',' -> continue
                    ']' -> return l
                    else -> error("expected , or ] at ${i - 1}")
                }
            }
        }

        fun str(): String {
            require(s[i] == '"') { "expected a string at $i" }
            i++
            val b = StringBuilder()
            while (true) {
                val c = s[i++]
                when (c) {
                    '"' -> return b.toString()
                    '\\' -> when (val e = s[i++]) {
                        'u' -> { b.append(s.substring(i, i + 4).toInt(16).toChar()); i += 4 }
                        'n' -> b.append('\n')
                        't' -> b.append('\t')
                        'r' -> b.append('\r')
                        'b' -> b.append('\b')
                        'f' -> b.append('\u000c')
                        else -> b.append(e)
                    }
                    else -> b.append(c)
                }
            }
        }

        fun num(): Number {
            val start = i
            while (i < s.length && s[i] in "+-0123456789.eE") i++
            val t = s.substring(start, i)
            require(t.isNotEmpty()) { "bad value at $start" }
            return if (t.any { it in ".eE" }) t.toDouble() else t.toLong()
        }
    }
}
