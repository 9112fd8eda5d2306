package org.medchain.wallet

import java.io.File
import java.util.concurrent.ConcurrentHashMap
import java.util.concurrent.Executors
import java.util.concurrent.TimeUnit
import kotlin.random.Random
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertFalse
import org.junit.jupiter.api.Assertions.assertNull
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.BeforeAll
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.TestInstance
import org.junit.jupiter.api.assertThrows

/**
 * The patient's wallet flow on the JVM, through the generated Kotlin bindings and JNA, the way an
 * Android app calls it. The fixtures are a real chain made by the core's TestNet
 * (`cargo run -p medchain-ffi --example make-fixtures`): validated blocks, real votes.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class WalletTest {
    private lateinit var dir: File

    private fun bytes(name: String): ByteArray = File(dir, name).readBytes()

    private fun text(name: String): String = File(dir, name).readText()

    private val password get() = text("patient.password")

    /** The fixture patient's wallet, restored into a fresh in-memory store (no network pinned). */
    private fun restored(): Wallet = Wallet.restore(newInMemoryWalletStore(), bytes("patient.backup"), password)

    /** The fixture patient's wallet, pinned to the fixture network: every signature binds it. */
    private fun patient(): Wallet = restored().also { it.trustNetwork(bytes("genesis.bin"), text("genesis.hash")) }

    /** The fixture network. */
    private fun network(): TrustedNetwork = TrustedNetwork(bytes("genesis.bin"), null)

    /** A wallet whose store is a Kotlin map: the foreign trait implemented in Kotlin. */
    class MapStore : WalletStore {
        val map = ConcurrentHashMap<String, ByteArray>()

        override fun get(key: String): ByteArray? = map[key]

        override fun put(key: String, value: ByteArray) {
            map[key] = value
        }

        override fun delete(key: String) {
            map.remove(key)
        }

        override fun keys(): List<String> = map.keys.toList()
    }

    private fun rule(grantee: String) = ConsentRule(
        effect = RuleEffect.PERMIT,
        grantees = listOf(Grantee.Party(grantee)),
        actions = listOf(ConsentAction.READ),
        purposes = listOf(PurposeOfUse.Treatment),
        resourceTypes = listOf("Observation"),
    )

    private fun draft(vararg rules: ConsentRule) = ConsentDraft(
        summary = "Dr. Ruiz may read my lab results for my treatment",
        issuedMs = 1_790_000_000_000uL,
        rules = rules.toList(),
    )

    /** Truncations, bit flips and garbage of [good]. */
    private fun mutations(good: ByteArray): List<ByteArray> {
        val out = mutableListOf(ByteArray(0), byteArrayOf(0), ByteArray(4) { -1 }, ByteArray(70_000) { -1 })
        for (cut in listOf(1, 2, 5, 33, good.size / 2, good.size - 1)) out.add(good.copyOf(minOf(cut, good.size)))
        out.add(good + byteArrayOf(0))
        val step = maxOf(good.size / 25, 1)
        for (i in good.indices step step) {
            val t = good.copyOf()
            t[i] = (t[i].toInt() xor 1).toByte()
            out.add(t)
        }
        return out
    }

    @BeforeAll
    fun fixtures() {
        val path = System.getProperty("medchain.fixtures") ?: error("set -Dmedchain.fixtures (scripts/test.sh does)")
        dir = File(path)
        assertTrue(File(dir, "genesis.bin").isFile, "no fixtures in $dir")
    }

    // --- identity -------------------------------------------------------------------------------

    @Test
    fun `create, open again with the password, and read the same identity`() {
        val store = MapStore()
        assertFalse(walletExists(store))
        val wallet = Wallet.create(store, "a long passphrase")
        assertTrue(walletExists(store))
        val again = Wallet.open(store, "a long passphrase")
        assertEquals(wallet.publicIdentity(), again.publicIdentity())
        assertTrue(wallet.publicIdentity().startsWith("mcid1"))
    }

    @Test
    fun `the Kotlin store holds only the encrypted backup and the public identity`() {
        val store = MapStore()
        val wallet = Wallet.create(store, "pw")
        assertEquals(setOf("identity.backup", "identity.public"), store.map.keys)
        assertEquals(wallet.publicIdentity(), String(store.map["identity.public"]!!))
        assertTrue(store.map["identity.backup"]!!.contentEquals(wallet.backup()))
        // The backup is encrypted: it does not open without the password.
        assertThrows<WalletException.WrongPassword> { Wallet.restore(newInMemoryWalletStore(), wallet.backup(), "not it") }
    }

    @Test
    fun `deleting the wallet leaves the store empty`() {
        val store = MapStore()
        val wallet = Wallet.create(store, "pw")
        wallet.trustNetwork(bytes("genesis.bin"), text("genesis.hash"))
        assertEquals(3, store.map.size)
        deleteWallet(store)
        assertTrue(store.map.isEmpty())
        assertFalse(walletExists(store))
        assertThrows<WalletException.NoWallet> { Wallet.open(store, "pw") }
    }

    @Test
    fun `a wrong password is a typed error`() {
        val store = newInMemoryWalletStore()
        Wallet.create(store, "right")
        assertThrows<WalletException.WrongPassword> { Wallet.open(store, "wrong") }
        assertThrows<WalletException.WrongPassword> { Wallet.restore(newInMemoryWalletStore(), bytes("patient.backup"), "wrong") }
    }

    @Test
    fun `empty password, empty store and a second wallet are typed errors`() {
        assertThrows<WalletException.WeakPassword> { Wallet.create(newInMemoryWalletStore(), "") }
        assertThrows<WalletException.NoWallet> { Wallet.open(newInMemoryWalletStore(), "pw") }
        val store = newInMemoryWalletStore()
        Wallet.create(store, "pw")
        assertThrows<WalletException.WalletExists> { Wallet.create(store, "pw") }
        assertThrows<WalletException.WalletExists> { Wallet.restore(store, bytes("patient.backup"), password) }
    }

    @Test
    fun `restore from a backup on a new phone, then change the password`() {
        val store = MapStore()
        val wallet = Wallet.restore(store, bytes("patient.backup"), password)
        assertEquals(text("patient.id"), wallet.publicIdentity())
        assertThrows<WalletException.WrongPassword> { wallet.changePassword("nope", "new one") }
        wallet.changePassword(password, "new one")
        assertThrows<WalletException.WrongPassword> { Wallet.open(store, password) }
        assertEquals(text("patient.id"), Wallet.open(store, "new one").publicIdentity())
    }

    @Test
    fun `malformed backups are typed errors, never crashes`() {
        for (bad in mutations(bytes("patient.backup"))) {
            val e = assertThrows<WalletException> { Wallet.restore(newInMemoryWalletStore(), bad, password) }
            assertTrue(e is WalletException.WrongPassword || e is WalletException.Malformed, e.toString())
        }
    }

    @Test
    fun `the public identity round-trips as a string`() {
        val wallet = patient()
        val info = parsePublicIdentity(wallet.publicIdentity())
        assertEquals(wallet.identityInfo(), info)
        assertEquals(32, info.partyId.length)
        assertEquals(info, parsePublicIdentity("  ${wallet.publicIdentity()}\n"))
    }

    @Test
    fun `bad identity strings are typed errors`() {
        val good = patient().publicIdentity()
        val typo = good.dropLast(1) + (if (good.last() == '0') '1' else '0')
        for (bad in listOf("", "mcid1", "hello", typo, good.take(60), good + "00", "mcid1" + "é".repeat(68), "x".repeat(5000))) {
            assertThrows<WalletException.InvalidIdentity>(bad) { parsePublicIdentity(bad) }
        }
    }

    // --- consents -------------------------------------------------------------------------------

    @Test
    fun `a consent grant is signed by the patient and verifiable`() {
        val wallet = patient()
        val signed = wallet.signConsent(draft(rule(text("doctor.id"))))
        assertEquals(RequestKind.CONSENT_GRANT, signed.kind)
        assertEquals(64, signed.subjectId.length)
        val info = inspectSignedRequest(signed.body, network())
        assertEquals(RequestKind.CONSENT_GRANT, info.kind)
        assertEquals(signed.subjectId, info.subjectId)
        assertEquals(wallet.publicIdentity(), info.patient)
        assertEquals(1u, info.ruleCount)
        // The fixture chain committed exactly this consent, signed the same way.
        assertEquals(text("consent.id"), signed.subjectId)
    }

    @Test
    fun `a signed consent exports as FHIR Consent and signs back to the same consent`() {
        val wallet = patient()
        val signed = wallet.signConsent(draft(rule(text("doctor.id"))))
        val fhir = signed.fhirJson!!
        assertTrue(fhir.contains("\"resourceType\":\"Consent\""))
        assertTrue(fhir.contains(wallet.publicIdentity()))
        assertEquals(signed.subjectId, wallet.signFhirConsent(fhir).subjectId)
        // Another patient's consent is not this wallet's to sign.
        val other = Wallet.create(newInMemoryWalletStore(), "x").also { it.trustNetwork(bytes("genesis.bin"), null) }
        assertThrows<WalletException.BadSignature> { other.signFhirConsent(fhir) }
        assertThrows<WalletException.Malformed> { wallet.signFhirConsent("{not json") }
        assertThrows<WalletException.InvalidConsent> { wallet.signFhirConsent("""{"resourceType":"Patient"}""") }
        // Not valid FHIR R4: refused with the paths of the problems, nothing signed.
        val invalid = assertThrows<WalletException.InvalidFhir> {
            wallet.signFhirConsent("""{"resourceType":"Consent","status":"approved","colour":"red"}""")
        }
        assertTrue(invalid.issues.contains("error at Consent.colour: unknown element"), invalid.issues.toString())
        assertTrue(invalid.issues.any { it.startsWith("error at Consent.status: the code is not in") })
        assertTrue(invalid.issues.none { it.contains("approved") })
    }

    @Test
    fun `a revocation is signed for the consent id`() {
        val wallet = patient()
        val rev = wallet.signRevocation(text("consent.id"))
        assertEquals(RequestKind.CONSENT_REVOCATION, rev.kind)
        val info = inspectSignedRequest(rev.body, network())
        assertEquals(RequestKind.CONSENT_REVOCATION, info.kind)
        assertEquals(text("consent.id"), info.subjectId)
        assertNull(rev.fhirJson)
        for (bad in listOf("", "abc", "z".repeat(64), "0".repeat(63))) {
            assertThrows<WalletException.InvalidArgument> { wallet.signRevocation(bad) }
        }
    }

    @Test
    fun `the emergency preference is signed, allow or refuse`() {
        val wallet = patient()
        for (choice in EmergencyAccess.values()) {
            val signed = wallet.signEmergencyPreference(choice, 1_790_000_000_000uL)
            val info = inspectSignedRequest(signed.body, network())
            assertEquals(choice, info.emergency)
            assertEquals(0u, info.ruleCount)
            assertTrue(signed.fhirJson!!.contains(if (choice == EmergencyAccess.ALLOW) "\"allow\"" else "\"refuse\""))
        }
    }

    @Test
    fun `research, roles and periods are representable, bad drafts are typed errors`() {
        val wallet = patient()
        val research = ConsentRule(
            effect = RuleEffect.PERMIT,
            grantees = listOf(Grantee.Researcher(null), Grantee.Clinician(text("institution.id"))),
            actions = listOf(ConsentAction.RESEARCH_USE),
            purposes = listOf(PurposeOfUse.Research("diabetes")),
            codes = listOf(CodedConcept("http://loinc.org", "4548-4")),
            startMs = 1uL,
            endMs = 2uL,
        )
        wallet.signConsent(draft(research, rule(text("doctor.id")).copy(effect = RuleEffect.DENY)))
        assertThrows<WalletException.InvalidConsent> { wallet.signConsent(draft()) }
        assertThrows<WalletException.InvalidArgument> { wallet.signConsent(draft(research.copy(startMs = 5uL, endMs = 1uL))) }
        assertThrows<WalletException.InvalidArgument> { wallet.signConsent(draft(research.copy(resourceTypes = listOf("Nope")))) }
        assertThrows<WalletException.InvalidArgument> { wallet.signConsent(draft(research.copy(purposes = listOf(PurposeOfUse.Other("has space"))))) }
        assertThrows<WalletException.InvalidIdentity> { wallet.signConsent(draft(rule("mcid1bad"))) }
        assertThrows<WalletException.InvalidConsent> { wallet.signConsent(draft(rule(text("doctor.id"))).copy(summary = "x".repeat(300))) }
        assertThrows<WalletException.InvalidConsent> { wallet.signConsent(draft(research.copy(resourceTypes = List(65) { "Observation" }))) }
    }

    @Test
    fun `signatures bind the pinned network`() {
        // A wallet signs nothing before it pins a network.
        val unpinned = restored()
        assertThrows<WalletException.NoTrustedNetwork> { unpinned.signConsent(draft(rule(text("doctor.id")))) }
        assertThrows<WalletException.NoTrustedNetwork> { unpinned.signRevocation(text("consent.id")) }
        assertThrows<WalletException.NoTrustedNetwork> { unpinned.requestErasure(text("record-erased.id")) }
        // A consent signed for a sibling network (same members) does not verify on ours, and back.
        val staging = TrustedNetwork(bytes("genesis-staging.bin"), null)
        val onStaging = restored().also { it.trustNetwork(bytes("genesis-staging.bin"), null) }
            .signConsent(draft(rule(text("doctor.id"))))
        assertThrows<WalletException.BadSignature> { inspectSignedRequest(onStaging.body, network()) }
        assertEquals(RequestKind.CONSENT_GRANT, inspectSignedRequest(onStaging.body, staging).kind)
        val onOurs = patient().signConsent(draft(rule(text("doctor.id"))))
        assertThrows<WalletException.BadSignature> { inspectSignedRequest(onOurs.body, staging) }
    }

    @Test
    fun `tampered signed requests do not verify`() {
        val signed = patient().signConsent(draft(rule(text("doctor.id"))))
        for (bad in mutations(signed.body)) {
            assertThrows<WalletException> { inspectSignedRequest(bad, network()) }
        }
    }

    // --- enrolment ------------------------------------------------------------------------------

    @Test
    fun `the wallet enrols at a hospital with its writer index key sealed to it`() {
        val hospital = text("institution.id")
        // A wallet signs nothing before it pins a network.
        assertThrows<WalletException.NoTrustedNetwork> { restored().exportWriterKey(hospital) }
        val wallet = patient()
        val sealed = wallet.exportWriterKey(hospital)
        assertEquals(449, sealed.size)
        val info = inspectWriterKey(sealed, network())
        assertEquals(wallet.publicIdentity(), info.patient)
        assertEquals(parsePublicIdentity(hospital).text, info.hospital)
        // Fresh randomness each time: two enrolments differ, both verify.
        assertFalse(sealed.contentEquals(wallet.exportWriterKey(hospital)))
        // Bound to the pinned network: a sibling network refuses it.
        assertThrows<WalletException.BadSignature> {
            inspectWriterKey(sealed, TrustedNetwork(bytes("genesis-staging.bin"), null))
        }
        for (bad in mutations(sealed)) {
            assertThrows<WalletException> { inspectWriterKey(bad, network()) }
        }
        assertThrows<WalletException.InvalidIdentity> { wallet.exportWriterKey("mcid1bad") }
    }

    // --- records --------------------------------------------------------------------------------

    @Test
    fun `a record addressed to me opens on the phone`() {
        val record = patient().openRecord(bytes("record-mine.sealed"))
        assertTrue(record.isMine)
        assertEquals("Observation", record.resourceType)
        assertEquals(text("record-mine.id"), record.recordId)
        assertTrue(record.fhirJson.contains("\"4548-4\""))
    }

    @Test
    fun `another wallet cannot open my record, and I cannot open another patient's`() {
        val stranger = Wallet.create(newInMemoryWalletStore(), "x")
        assertThrows<WalletException.NotAddressedToMe> { stranger.openRecord(bytes("record-mine.sealed")) }
        assertThrows<WalletException.NotAddressedToMe> { patient().openRecord(bytes("record-foreign.sealed")) }
    }

    @Test
    fun `damaged sealed records are typed errors`() {
        val wallet = patient()
        for (bad in mutations(bytes("record-mine.sealed"))) {
            try {
                // A flip in the hospital's envelope leaves mine intact: same content.
                assertTrue(wallet.openRecord(bad).fhirJson.contains("4548-4"))
            } catch (e: WalletException) {
                assertTrue(
                    e is WalletException.Malformed || e is WalletException.RecordDamaged || e is WalletException.NotAddressedToMe,
                    e.toString(),
                )
            }
        }
    }

    @Test
    fun `an erasure request is signed for the record`() {
        val wallet = patient()
        val req = wallet.requestErasure(text("record-erased.id"))
        assertEquals(RequestKind.RECORD_ERASURE, req.kind)
        val info = inspectSignedRequest(req.body, network())
        assertEquals(text("record-erased.id"), info.subjectId)
        assertEquals(wallet.publicIdentity(), info.patient)
        assertThrows<WalletException.InvalidArgument> { wallet.requestErasure("not hex") }
    }

    // --- light client ---------------------------------------------------------------------------

    private fun trusting(): Wallet = patient()

    @Test
    fun `a committed record is proven with the genesis alone`() {
        val wallet = trusting()
        val tx = wallet.verifyInclusion(bytes("proof-record.bin"))
        assertEquals(TransactionKind.RECORD_ADDED, tx.kind)
        assertEquals(1uL, tx.height)
        assertEquals("validator-0", tx.contributorName)
        assertEquals(TransactionKind.CONSENT_GRANTED, wallet.verifyInclusion(bytes("proof-consent.bin")).kind)
        assertEquals(TransactionKind.RECORD_ERASED, wallet.verifyInclusion(bytes("proof-erasure.bin")).kind)
        val info = wallet.trustedNetwork().info()
        assertEquals(text("genesis.hash"), info.genesisHash)
        assertEquals(4u, info.validators)
        assertEquals(3u, info.quorum)
    }

    @Test
    fun `a tampered header is caught`() {
        assertThrows<ProofException.HeaderNotCertified> { trusting().verifyInclusion(bytes("proof-tampered-header.bin")) }
    }

    @Test
    fun `a proof for another block is caught`() {
        assertThrows<ProofException.NotInBlock> { trusting().verifyInclusion(bytes("proof-other-block.bin")) }
    }

    @Test
    fun `votes from outside the genesis trusted set are caught`() {
        val e = assertThrows<ProofException.UntrustedVoter> { trusting().verifyInclusion(bytes("proof-outsider-votes.bin")) }
        assertEquals(64, e.voter.length)
        val q = assertThrows<ProofException.NoQuorum> { trusting().verifyInclusion(bytes("proof-no-quorum.bin")) }
        assertEquals(1u, q.have)
        assertEquals(3u, q.need)
    }

    @Test
    fun `another network, a wrong pin and no pin are typed errors`() {
        assertThrows<ProofException.NoTrustedNetwork> { restored().verifyInclusion(bytes("proof-record.bin")) }
        val other = TrustedNetwork(bytes("genesis-other.bin"), null)
        assertThrows<ProofException.WrongNetwork> { other.verifyInclusion(bytes("proof-record.bin")) }
        assertThrows<ProofException.GenesisMismatch> { TrustedNetwork(bytes("genesis-other.bin"), text("genesis.hash")) }
        assertThrows<ProofException.GenesisMismatch> { restored().trustNetwork(bytes("genesis-other.bin"), text("genesis.hash")) }
        assertThrows<ProofException.Malformed> { TrustedNetwork(bytes("genesis.bin"), "not a hash") }
    }

    @Test
    fun `malformed proofs and genesis bytes are typed errors`() {
        val wallet = trusting()
        for (bad in mutations(bytes("proof-record.bin"))) {
            assertThrows<ProofException> { wallet.verifyInclusion(bad) }
        }
        for (bad in mutations(bytes("genesis.bin"))) {
            try {
                TrustedNetwork(bad, null)
            } catch (e: ProofException.Malformed) {
                // expected for most
            }
        }
    }

    // --- audit trail ----------------------------------------------------------------------------

    @Test
    fun `the audit trail shows who read what, when, why, with emergencies flagged`() {
        val trail = patient().readAuditTrail(bytes("audit.bin"))
        assertEquals(
            listOf(AuditAction.KEY_SHARED, AuditAction.ACCESSED, AuditAction.KEY_SHARED, AuditAction.ACCESSED, AuditAction.ERASED, AuditAction.DENIED),
            trail.map { it.action },
        )
        // A refused request: who asked, why, the rule that refused; no consent, nothing released.
        val refused = trail[5]
        assertEquals(text("stranger.id"), refused.actor)
        assertEquals("TREAT", refused.purpose)
        assertEquals("denied", refused.deniedBy)
        assertEquals(text("relay.key"), refused.relayedBy)
        assertEquals(null, refused.consentId)
        assertTrue(trail.take(5).all { it.deniedBy == null && it.relayedBy == null })
        val doctorRead = trail[1]
        assertEquals(text("doctor.id"), doctorRead.actor)
        assertEquals("TREAT", doctorRead.purpose)
        assertEquals(text("consent.id"), doctorRead.consentId)
        assertFalse(doctorRead.emergency)
        val emergencies = trail.filter { it.emergency }
        assertEquals(2, emergencies.size)
        assertTrue(emergencies.all { it.purpose == "ETREAT" && it.consentId == null && it.actor == text("emergency-doctor.id") })
        assertTrue(emergencies[1].fhirAuditEvent.contains("\"valueBoolean\":true"))
        assertEquals(text("record-erased.id"), trail[4].recordId)
        assertTrue(trail.zipWithNext().all { (a, b) -> a.height <= b.height })
    }

    @Test
    fun `an audit entry's transaction is proven committed by the light client`() {
        val wallet = trusting()
        val emergency = wallet.readAuditTrail(bytes("audit.bin")).last { it.emergency }
        val tx = wallet.verifyInclusion(bytes("proof-emergency-access.bin"))
        assertEquals(emergency.txId, tx.txId)
        assertEquals(emergency.height, tx.height)
        assertEquals(TransactionKind.ACCESS_LOGGED, tx.kind)
    }

    @Test
    fun `another patient's trail and malformed trails are typed errors`() {
        val stranger = Wallet.create(newInMemoryWalletStore(), "x")
        assertThrows<WalletException.ForeignAuditEntry> { stranger.readAuditTrail(bytes("audit.bin")) }
        assertEquals(6, decodeAuditEntries(bytes("audit.bin")).size)
        assertEquals(emptyList<AuditRecord>(), patient().readAuditTrail(ByteArray(4)))
        assertThrows<WalletException.Malformed> { patient().readAuditTrail(byteArrayOf(-1, -1, -1, -1)) }
        assertThrows<WalletException.Malformed> { patient().readAuditTrail(bytes("audit.bin").copyOf(100)) }
    }

    // --- the app's store ------------------------------------------------------------------------

    @Test
    fun `a Kotlin store that fails is a typed error`() {
        val locked = object : WalletStore {
            override fun get(key: String): ByteArray? = throw StoreException.Io("keystore locked")
            override fun put(key: String, value: ByteArray) = throw StoreException.Io("keystore locked")
            override fun delete(key: String) {}
            override fun keys(): List<String> = emptyList()
        }
        val e = assertThrows<WalletException.Store> { Wallet.create(locked, "pw") }
        assertTrue(e.reason.contains("keystore locked"), e.reason)
        val buggy = object : WalletStore {
            override fun get(key: String): ByteArray? = throw IllegalStateException("bug in the app")
            override fun put(key: String, value: ByteArray) {}
            override fun delete(key: String) {}
            override fun keys(): List<String> = emptyList()
        }
        assertThrows<WalletException.Store> { Wallet.open(buggy, "pw") }
    }

    @Test
    fun `the in-memory store is usable from Kotlin`() {
        val store = newInMemoryWalletStore()
        assertNull(store.get("a"))
        store.put("a", byteArrayOf(1, 2))
        assertTrue(store.get("a")!!.contentEquals(byteArrayOf(1, 2)))
        assertEquals(listOf("a"), store.keys())
        store.delete("a")
        assertEquals(emptyList<String>(), store.keys())
    }

    // --- hostile input everywhere ---------------------------------------------------------------

    @Test
    fun `random bytes into every entry point never crash the JVM`() {
        val wallet = trusting()
        val rnd = Random(42)
        repeat(300) {
            val junk = rnd.nextBytes(rnd.nextInt(0, 600))
            runCatching { wallet.openRecord(junk) }.exceptionOrNull()?.let { assertTrue(it is WalletException, it.toString()) }
            runCatching { wallet.readAuditTrail(junk) }.exceptionOrNull()?.let { assertTrue(it is WalletException, it.toString()) }
            runCatching { inspectSignedRequest(junk, network()) }.exceptionOrNull()?.let { assertTrue(it is WalletException, it.toString()) }
            runCatching { wallet.verifyInclusion(junk) }.exceptionOrNull()?.let { assertTrue(it is ProofException, it.toString()) }
            runCatching { TrustedNetwork(junk, null) }.exceptionOrNull()?.let { assertTrue(it is ProofException, it.toString()) }
            runCatching { Wallet.restore(newInMemoryWalletStore(), junk, "pw") }.exceptionOrNull()?.let { assertTrue(it is WalletException, it.toString()) }
            runCatching { parsePublicIdentity(String(junk, Charsets.ISO_8859_1)) }.exceptionOrNull()?.let { assertTrue(it is WalletException, it.toString()) }
        }
    }

    @Test
    fun `one wallet is safe to use from many threads`() {
        val wallet = trusting()
        val record = bytes("record-mine.sealed")
        val proof = bytes("proof-record.bin")
        val pool = Executors.newFixedThreadPool(4)
        val futures = (0 until 42).map { i ->
            pool.submit<Pair<Int, String>> {
                i % 3 to when (i % 3) {
                    0 -> wallet.openRecord(record).recordId
                    1 -> wallet.verifyInclusion(proof).height.toString()
                    else -> wallet.signRevocation(text("consent.id")).subjectId
                }
            }
        }
        val results = futures.map { it.get(60, TimeUnit.SECONDS) }.groupBy({ it.first }, { it.second })
        pool.shutdown()
        assertEquals(setOf(text("record-mine.id")), results[0]!!.toSet())
        assertEquals(setOf("1"), results[1]!!.toSet())
        assertEquals(setOf(text("consent.id")), results[2]!!.toSet())
        assertEquals("0.1.0", medchainFfiVersion())
    }
}
