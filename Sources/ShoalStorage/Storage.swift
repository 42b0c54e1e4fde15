// Storage: see ARCHITECTURE.md §Storage.
import ShoalCrypto

package enum StorageModule {}
